// SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764): only CRLF.CRLF ends DATA, so
// a fake end-of-data followed by a second transaction never yields a second message; and only
// CRLF ends a command line, so commands hidden behind a bare LF never run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openTransaction, RawClient } from '../helpers/smtp-client.js';
import { startTestNode } from '../helpers/node.js';

const FAKE_ENDS = ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r\n', '\r\n.\r', '\n.\r'];
const SMUGGLED = 'MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n';

for (const fake of FAKE_ENDS) {
  test(`fake end ${JSON.stringify(fake)} with a smuggled transaction yields no second message`, async (t) => {
    const node = await startTestNode(t);
    const c = await openTransaction(t, node.ports.smtpPort, { helo: 'attacker.example', from: 'a@attacker.example', to: 'b@example.com' });
    assert.equal((await c.cmd('DATA')).code, 354);
    c.write(`Subject: first\r\n\r\nhello${fake}${SMUGGLED}`);
    // The smuggled ".\r\n" (preceded by CRLF) is the real end: exactly one reply, a refusal.
    const r = await c.read();
    assert.equal(r.code, 554, `expected a refusal, got ${r.code} ${r.text}`);
    assert.match(r.text, /^5\.6\.0 .*bare CR or LF/);
    assert.equal((await c.cmd('NOOP')).code, 250, 'the session is in sync: no queued replies to smuggled commands');
    assert.equal(c.pending(), 0);
    assert.equal(node.queue.counts().total, 0, 'nothing queued, and certainly not a second message');
  });
}

test('a clean message after a refused one is accepted (the session stays usable)', async (t) => {
  const node = await startTestNode(t);
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  assert.equal((await c.cmd('bare\nlf\r\n.')).code, 554);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  assert.equal((await c.cmd('fine\r\n.')).code, 250);
  assert.equal(node.queue.counts().total, 1);
});

test('a bare LF does not split commands: "NOOP<LF>MAIL FROM:<x><CRLF>" is one line, refused whole', async (t) => {
  const node = await startTestNode(t);
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO attacker.example');
  c.write('NOOP\nMAIL FROM:<admin@bank.example>\r\n');
  const r = await c.read();
  assert.equal(r.code, 500);
  assert.match(r.text, /^5\.5\.2 .*bare CR or LF/);
  const rcpt = await c.cmd('RCPT TO:<victim@example.com>');
  assert.equal(rcpt.code, 503, `MAIL must not have run: RCPT got ${rcpt.code} ${rcpt.text}`);
  // A whole smuggled transaction behind a bare LF, in one segment and cut in two.
  c.write('RSET\nMAIL FROM:<admin@bank.example>\nRCPT TO:<victim@example.com>\n');
  assert.equal((await c.read()).code, 500);
  c.write('DATA\r\n');
  c.write('MAIL FROM:<a@example.com>\r\n');
  assert.equal((await c.read()).code, 250, 'after the CRLF, the next line is a command again');
  const data = await c.cmd('DATA');
  assert.equal(data.code, 554, 'no recipient: the smuggled RCPT never ran');
  assert.match(data.text, /^5\.5\.1 No valid recipients/);
  assert.equal(c.pending(), 0, 'one reply for each refused line, no more');
  assert.equal(node.queue.counts().total, 0);
});
