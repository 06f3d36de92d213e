// SMTP smuggling (SEC Consult, December 2023; CVE-2023-51764): only CRLF.CRLF ends DATA, so
// a fake end-of-data followed by a second transaction never yields a second message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../helpers/smtp-client.js';
import { startTestNode } from '../helpers/node.js';

const FAKE_ENDS = ['\n.\n', '\r\n.\n', '\n.\r\n', '\r.\r\n', '\r\n.\r', '\n.\r'];
const SMUGGLED = 'MAIL FROM:<admin@bank.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n';

for (const fake of FAKE_ENDS) {
  test(`fake end ${JSON.stringify(fake)} with a smuggled transaction yields no second message`, async (t) => {
    const node = await startTestNode(t);
    const c = await RawClient.connect(node.ports.smtpPort);
    t.after(() => c.end());
    await c.read();
    await c.cmd('EHLO attacker.example');
    await c.cmd('MAIL FROM:<a@attacker.example>');
    await c.cmd('RCPT TO:<b@example.com>');
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
