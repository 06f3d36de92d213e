// Conformance per command and extension over real sockets on 127.0.0.1 (RFC 5321, 1870,
// 2920, 3030, 3461, 3463, 6152, 6531, 6710).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { RawClient } from '../helpers/smtp-client.js';
import { startTestNode } from '../helpers/node.js';

async function session(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  const greeting = await c.read();
  assert.equal(greeting.code, 220);
  return c;
}

function queuedId(text: string): string {
  const m = /queued as (\S+)/.exec(text);
  assert.ok(m, `no queue id in ${JSON.stringify(text)}`);
  return m[1]!;
}

test('greeting, EHLO capabilities and HELO', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_MESSAGE_BYTES: '1M' });
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  const ehlo = await c.cmd('EHLO client.example');
  assert.equal(ehlo.code, 250);
  assert.match(ehlo.lines[0]!, /^mx\.test\.example/);
  for (const cap of ['PIPELINING', 'SIZE 1048576', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES', 'CHUNKING', 'DSN', 'MT-PRIORITY', 'HELP']) {
    assert.ok(ehlo.lines.includes(cap), `EHLO lacks ${cap}: ${ehlo.lines.join('|')}`);
  }
  assert.ok(!ehlo.lines.includes('STARTTLS'), 'no STARTTLS without a certificate');
  assert.ok(!ehlo.lines.some((l) => l.startsWith('AUTH')), 'no AUTH without users');
  const helo = await c.cmd('HELO client.example');
  assert.equal(helo.code, 250);
  assert.equal((await c.cmd('EHLO')).code, 501);
});

test('simple commands: NOOP RSET VRFY HELP EXPN QUIT and unknown verbs', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  assert.deepEqual([(await c.cmd('NOOP')).code, (await c.cmd('noop')).code], [250, 250]);
  const v = await c.cmd('VRFY someone');
  assert.equal(v.code, 252);
  assert.match(v.text, /^2\.5\.2 /);
  assert.equal((await c.cmd('HELP')).code, 214);
  const e = await c.cmd('EXPN list');
  assert.equal(e.code, 502);
  const u = await c.cmd('FOOBAR');
  assert.equal(u.code, 500);
  assert.match(u.text, /^5\.5\.1 /);
  assert.equal((await c.cmd('TURN')).code, 502);
  assert.equal((await c.cmd('NOOPX')).code, 500);
  assert.equal((await c.cmd('RSET')).code, 250);
  assert.equal((await c.cmd('RSET now')).code, 501);
  const q = await c.cmd('QUIT');
  assert.equal(q.code, 221);
  assert.match(q.text, /^2\.0\.0 /);
  assert.ok(await c.closedByServer());
});

test('sequence errors are 503 with 5.5.1', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  let r = await c.cmd('MAIL FROM:<a@example.com>');
  assert.equal(r.code, 503);
  assert.match(r.text, /^5\.5\.1 /);
  await c.cmd('EHLO c');
  assert.equal((await c.cmd('RCPT TO:<b@example.com>')).code, 503);
  assert.equal((await c.cmd('DATA')).code, 503);
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<a@example.com>')).code, 503);
  r = await c.cmd('DATA');
  assert.equal(r.code, 554, 'DATA without a recipient');
  assert.match(r.text, /^5\.5\.1 /);
});

test('a message is queued with its envelope, a Received header and the exact body', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO client.example');
  assert.equal((await c.cmd('MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<bob@example.org>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<carol@Example.NET>')).code, 250);
  assert.equal((await c.cmd('DATA')).code, 354);
  const r = await c.cmd('Subject: hi\r\n\r\nline one\r\n..dotted\r\n..\r\n.');
  assert.equal(r.code, 250);
  assert.match(r.text, /^2\.0\.0 Ok: queued as /);
  const id = queuedId(r.text);
  const m = node.queue.get(id)!;
  assert.equal(m.sender, 'alice@example.com');
  assert.deepEqual(m.recipients.map((x) => [x.address, x.domain, x.state]), [['bob@example.org', 'example.org', 'pending'], ['carol@Example.NET', 'example.net', 'pending']]);
  assert.equal(m.bodyType, '8BITMIME');
  assert.equal(m.declaredSize, 100);
  assert.equal(m.client?.ip, '127.0.0.1');
  const body = node.queue.withBody(id, (b) => b.toString('latin1'));
  assert.match(body, /^Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n\tby mx\.test\.example \(postern\) with ESMTP id \S+;\r\n\t\w{3}, \d\d \w{3} \d{4} [\d:]{8} \+0000\r\n/);
  assert.ok(body.includes(` id ${id};\r\n`), 'the Received header names the queue id');
  const afterReceived = body.slice(body.indexOf('Subject:'));
  assert.equal(afterReceived, 'Subject: hi\r\n\r\nline one\r\n.dotted\r\n.\r\n');
});

test('pipelining: a whole transaction in one write gets its replies in order', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO client.example');
  c.write('MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<bad address>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n');
  const rs = await c.readN(5);
  assert.deepEqual(rs.map((r) => r.code), [250, 250, 501, 250, 354]);
  // The message, a second full transaction and a NOOP in one write.
  c.write('Subject: one\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n');
  const rs2 = await c.readN(4);
  assert.deepEqual(rs2.map((r) => r.code), [250, 250, 250, 354]);
  c.write('Subject: two\r\n\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n');
  const rs3 = await c.readN(3);
  assert.deepEqual(rs3.map((r) => r.code), [250, 250, 221]);
  const id1 = queuedId(rs2[0]!.text);
  const id2 = queuedId(rs3[0]!.text);
  assert.notEqual(id1, id2);
  assert.deepEqual(node.queue.get(id1)!.recipients.map((r) => r.address), ['b@example.com', 'c@example.com']);
  assert.deepEqual(node.queue.get(id2)!.recipients.map((r) => r.address), ['d@example.com']);
  assert.equal(node.queue.counts().total, 2);
});

test('many pipelined transactions in one write are all answered in order', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO client.example');
  const n = 50;
  let s = '';
  for (let i = 0; i < n; i++) s += `MAIL FROM:<a@example.com>\r\nRCPT TO:<r${i}@example.com>\r\nBDAT 14 LAST\r\nSubject: ${String(i).padStart(3, '0')}\r\n`;
  c.write(s);
  const rs = await c.readN(3 * n, 10000);
  for (let i = 0; i < n; i++) assert.deepEqual(rs.slice(3 * i, 3 * i + 3).map((r) => r.code), [250, 250, 250], `transaction ${i}`);
  assert.equal(node.queue.counts().total, n);
});

test('CHUNKING: BDAT chunks, BDAT 0 LAST, and sequence errors that still consume the chunk', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO client.example');
  // BDAT without a transaction: the 5 bytes are read and dropped, the session stays in sync.
  c.write('BDAT 5\r\nRSET\r');
  let r = await c.read();
  assert.equal(r.code, 503);
  assert.equal((await c.cmd('NOOP')).code, 250);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  c.write('BDAT 10\r\nSubject: x');
  r = await c.read();
  assert.equal(r.code, 250);
  assert.match(r.text, /10 octets/);
  assert.equal((await c.cmd('DATA')).code, 503, 'DATA after BDAT');
  c.write('BDAT 10\r\n\r\n\r\nbody\r\n');
  assert.equal((await c.read()).code, 250);
  r = await c.cmd('BDAT 0 LAST');
  assert.equal(r.code, 250);
  const id = queuedId(r.text);
  const body = node.queue.withBody(id, (b) => b.toString('latin1'));
  assert.ok(body.endsWith('Subject: x\r\n\r\nbody\r\n'), JSON.stringify(body));
  assert.equal((await c.cmd('BDAT x')).code, 501);
});

test('SIZE: declared too big is 552 at MAIL; actually too big is 552 5.3.4 and nothing is queued', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_MESSAGE_BYTES: '2048' });
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  const r1 = await c.cmd('MAIL FROM:<a@example.com> SIZE=999999');
  assert.equal(r1.code, 552);
  assert.match(r1.text, /^5\.3\.4 /);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  const line = 'x'.repeat(70) + '\r\n';
  const r2 = await c.cmd(line.repeat(100) + '.');
  assert.equal(r2.code, 552);
  assert.match(r2.text, /^5\.3\.4 /);
  assert.equal(node.queue.counts().total, 0);
  // The session is still usable.
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  c.write('BDAT 3000 LAST\r\n' + ('y'.repeat(98) + '\r\n').repeat(30));
  const r3 = await c.read();
  assert.equal(r3.code, 552);
  assert.equal(node.queue.counts().total, 0);
  assert.equal((await c.cmd('NOOP')).code, 250);
});

test('recipient limit: 452 4.5.3 past POSTERN_MAX_RECIPIENTS', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_RECIPIENTS: '3' });
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@example.com>');
  for (let i = 0; i < 3; i++) assert.equal((await c.cmd(`RCPT TO:<r${i}@example.com>`)).code, 250);
  const r = await c.cmd('RCPT TO:<r4@example.com>');
  assert.equal(r.code, 452);
  assert.match(r.text, /^4\.5\.3 /);
});

test('parameters: unknown is 555, DSN and MT-PRIORITY are stored', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  const bad = await c.cmd('MAIL FROM:<a@example.com> FOO=bar');
  assert.equal(bad.code, 555);
  assert.match(bad.text, /^5\.5\.4 /);
  assert.equal((await c.cmd('MAIL FROM:<a@example.com> RET=MAYBE')).code, 501);
  assert.equal((await c.cmd('MAIL FROM:<a@example.com> MT-PRIORITY=12')).code, 501);
  assert.equal((await c.cmd('MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B314 MT-PRIORITY=-4 SMTPUTF8')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.com')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<c@example.com> NOTIFY=NEVER')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<d@example.com> NOTIFY=NEVER,SUCCESS')).code, 501);
  assert.equal((await c.cmd('RCPT TO:<d@example.com> BOGUS')).code, 555);
  assert.equal((await c.cmd('RCPT TO:<ü@exämple.com>')).code, 250, 'SMTPUTF8 address');
  await c.cmd('DATA');
  const id = queuedId((await c.cmd('Subject: p\r\n\r\nx\r\n.')).text);
  const m = node.queue.get(id)!;
  assert.equal(m.ret, 'HDRS');
  assert.equal(m.envid, 'QQ+314');
  assert.equal(m.mtPriority, -4);
  assert.equal(m.priority, 2, 'negative MT-PRIORITY is bulk');
  assert.equal(m.smtputf8, true);
  assert.deepEqual(m.recipients[0]!.notify, ['SUCCESS', 'FAILURE']);
  assert.equal(m.recipients[0]!.orcpt, 'rfc822;b+x@example.com');
  assert.deepEqual(m.recipients[1]!.notify, ['NEVER']);
  assert.equal(m.recipients[2]!.address, 'ü@exämple.com');
  const body = node.queue.withBody(id, (b) => b.toString('utf8'));
  assert.match(body, /with UTF8SMTP id/);
  // Without SMTPUTF8 a non-ASCII address is refused.
  await c.cmd('MAIL FROM:<a@example.com>');
  const u = await c.cmd('RCPT TO:<ü@example.com>');
  assert.equal(u.code, 553);
  assert.match(u.text, /^5\.6\.7 /);
});

test('MT-PRIORITY: trusted clients may raise priority (urgent)', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@example.com> MT-PRIORITY=5');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  const id = queuedId((await c.cmd('x\r\n.')).text);
  assert.equal(node.queue.get(id)!.priority, 0);
  assert.equal(node.queue.get(id)!.mtPriority, 5);
});

test('relay control: untrusted clients reach local domains only (550 5.7.1), and MT-PRIORITY is capped', async (t) => {
  const node = await startTestNode(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_LOCAL_DOMAINS: 'local.example,other.example' });
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@elsewhere.example> MT-PRIORITY=7');
  const denied = await c.cmd('RCPT TO:<victim@gmail.example>');
  assert.equal(denied.code, 550);
  assert.match(denied.text, /^5\.7\.1 /);
  assert.equal((await c.cmd('RCPT TO:<user@LOCAL.example>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<Postmaster>')).code, 250);
  await c.cmd('DATA');
  const id = queuedId((await c.cmd('x\r\n.')).text);
  const m = node.queue.get(id)!;
  assert.deepEqual(m.recipients.map((r) => r.address), ['user@LOCAL.example', 'postmaster@mx.test.example']);
  assert.equal(m.priority, 1, 'untrusted MT-PRIORITY=7 capped to normal');
});

test('the default configuration is not an open relay', async () => {
  const { loadConfig } = await import('../../src/config/load.js');
  const c = loadConfig({});
  assert.deepEqual(c.trustedNetworks, ['127.0.0.0/8', '::1/128']);
  assert.deepEqual(c.localDomains, []);
  assert.equal(c.smtpHost, '127.0.0.1');
  assert.equal(c.requireTlsForAuth, true);
});

test('address syntax errors: 501 5.1.7 for senders, 501 5.1.3 for recipients', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  for (const bad of ['MAIL FROM:a@example.com', 'MAIL FROM:<a@@example.com>', 'MAIL FROM:<a@exa mple.com>', 'MAIL FROM:<a@-x.com>', 'MAIL TO:<a@b.c>']) {
    const r = await c.cmd(bad);
    assert.equal(r.code, 501, bad);
  }
  assert.match((await c.cmd('MAIL FROM:<a@@example.com>')).text, /^5\.1\.7 /);
  assert.equal((await c.cmd('MAIL FROM:<>')).code, 250, 'null sender');
  const r = await c.cmd('RCPT TO:<>');
  assert.equal(r.code, 501);
  assert.match(r.text, /^5\.1\.3 /);
  assert.equal((await c.cmd('RCPT TO:<@relay.example:user@example.com>')).code, 250, 'source route ignored');
  assert.equal((await c.cmd('RCPT TO:<"quoted local"@example.com>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<user@[192.0.2.1]>')).code, 250);
});

test('limits: bare LF in a command is 500 5.5.2; an overlong command line is 500 5.5.6 and closes', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  c.write('NOOP\n');
  const r = await c.read();
  assert.equal(r.code, 500);
  assert.match(r.text, /^5\.5\.2 /);
  c.write('NOOP\r\n'); // the rest of that line, up to its CRLF: refused with it, no second reply
  c.write('NOOP\rNOOP\r\n');
  assert.equal((await c.read()).code, 500);
  assert.equal((await c.cmd('NOOP')).code, 250);
  assert.equal(c.pending(), 0);
  c.write('NOOP ' + 'x'.repeat(5000) + '\r\n');
  const long = await c.read();
  assert.equal(long.code, 500);
  assert.match(long.text, /^5\.5\.6 /);
  assert.ok(await c.closedByServer());
});

test('a client flooding bytes without CRLF is cut off while another is served', async (t) => {
  const node = await startTestNode(t);
  const flood = await session(node.ports.smtpPort);
  const good = await session(node.ports.smtpPort);
  t.after(() => {
    flood.end();
    good.end();
  });
  const junk = Buffer.alloc(64 * 1024, 0x41);
  for (let i = 0; i < 64 && !flood.closed; i++) flood.write(junk);
  const r = await flood.read();
  assert.equal(r.code, 500);
  assert.ok(await flood.closedByServer());
  assert.equal((await good.cmd('EHLO c')).code, 250);
  assert.equal((await good.cmd('NOOP')).code, 250);
});

test('lines split across packets by several clients at once are each answered whole, and a refused line is skipped only in its own session', async (t) => {
  const node = await startTestNode(t);
  const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => session(node.ports.smtpPort)));
  t.after(() => [a, b, c, d].forEach((x) => x!.end()));
  // Each write its own packet: the sessions leave lines unfinished in turn, between lines of the others.
  const steps: Array<[RawClient, string]> = [
    [a, 'NOO'],
    [d, 'NOOP\n'], // a bare LF: 500, then the rest of that line up to its CRLF is skipped
    [b, 'HEL'],
    [c, 'NOOP\r\nRS'],
    [d, 'skipped rest'],
    [b, 'O b.example\r\n'],
    [a, 'P\r\n'],
    [c, 'ET\r\n'],
    [d, '\r\nNOOP\r\n'],
  ];
  for (const [client, bytes] of steps) {
    client!.write(bytes);
    await new Promise((r) => setTimeout(r, 30));
  }
  assert.equal((await a!.read()).code, 250, 'a: NOOP in two packets');
  assert.equal((await b!.read()).code, 250, 'b: HELO in two packets');
  assert.deepEqual(
    (await c!.readN(2)).map((r) => r.code),
    [250, 250],
    'c: NOOP, then RSET in two packets',
  );
  const bad = await d!.read();
  assert.equal(bad.code, 500);
  assert.match(bad.text, /^5\.5\.2 /);
  assert.equal((await d!.read()).code, 250, 'd: only the NOOP after the skipped line is answered');
  await new Promise((r) => setTimeout(r, 100));
  for (const x of [a, b, c, d]) assert.equal(x!.pending(), 0, 'no other reply');
});

test('connection limits: per IP gets 421 4.7.0; at the total limit the session silent longest makes room', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_CONNECTIONS: '3', POSTERN_MAX_CONNECTIONS_PER_IP: '2', POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const a = await session(node.ports.smtpPort);
  const b = await session(node.ports.smtpPort);
  t.after(() => {
    a.end();
    b.end();
  });
  const third = await RawClient.connect(node.ports.smtpPort);
  const r = await third.read();
  assert.equal(r.code, 421);
  assert.match(r.text, /^4\.7\.0 .*your address/);
  assert.ok(await third.closedByServer());
  // From another loopback address the per-IP limit is separate but the total applies: the
  // fourth client is served, and the session silent longest (a) is closed to make room.
  const other = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.2' });
  assert.equal((await other.read()).code, 220);
  assert.equal((await b.cmd('NOOP')).code, 250);
  const fourth = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.3' });
  assert.equal((await fourth.read()).code, 220);
  const ra = await a.read();
  assert.equal(ra.code, 421);
  assert.match(ra.text, /^4\.7\.0 .*Too many connections/);
  assert.ok(await a.closedByServer());
  assert.equal((await b.cmd('NOOP')).code, 250, 'the others are untouched');
  assert.equal((await other.cmd('NOOP')).code, 250);
  assert.equal((await fourth.cmd('NOOP')).code, 250);
  assert.equal(node.smtp.sessionCount, 3);
  other.end();
  fourth.end();
});

test('idle timeout: 421 4.4.2 and close', async (t) => {
  const node = await startTestNode(t, { POSTERN_IDLE_TIMEOUT_MS: '1000' });
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  const r = await c.read(4000);
  assert.equal(r.code, 421);
  assert.match(r.text, /^4\.4\.2 /);
  assert.ok(await c.closedByServer());
});

test('too many errors: 421 4.7.0 and close', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_ERRORS: '3' });
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  c.write('X1\r\nX2\r\nX3\r\nNOOP\r\n');
  const rs = await c.readN(4);
  assert.deepEqual(rs.map((r) => r.code), [500, 500, 500, 421]);
  assert.ok(await c.closedByServer());
});

test('text lines over 998 octets refuse the message with 554 5.6.0', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  const r = await c.cmd('Subject: x\r\n\r\n' + 'y'.repeat(999) + '\r\n.');
  assert.equal(r.code, 554);
  assert.match(r.text, /^5\.6\.0 /);
  assert.equal(node.queue.counts().total, 0);
});

test('a NUL octet refuses the message with 554 5.6.0, in DATA and in BDAT', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  const r = await c.cmd('Subject: x\r\n\r\nnul \0 here\r\n.');
  assert.equal(r.code, 554);
  assert.match(r.text, /^5\.6\.0 .*NUL/);
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  const body = 'Subject: y\r\n\r\nthen a NUL: \0\r\n';
  c.write('BDAT 12\r\nSubject: y\r\n');
  assert.equal((await c.read()).code, 250);
  c.write(`BDAT ${Buffer.byteLength(body) - 12} LAST\r\n${body.slice(12)}`);
  const b = await c.read();
  assert.equal(b.code, 554);
  assert.match(b.text, /^5\.6\.0 .*NUL/);
  assert.equal((await c.cmd('NOOP')).code, 250, 'the session is in sync after both');
  assert.equal(node.queue.counts().total, 0);
  // The same message without the NUL is accepted.
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  assert.equal((await c.cmd('Subject: x\r\n\r\nno nul here\r\n.')).code, 250);
  assert.equal(node.queue.counts().total, 1);
});

test('graceful shutdown: idle sessions get 421 4.3.2, a transaction in flight completes', async (t) => {
  const node = await startTestNode(t, { POSTERN_SHUTDOWN_TIMEOUT_MS: '5000' });
  const idle = await session(node.ports.smtpPort);
  const busy = await session(node.ports.smtpPort);
  t.after(() => {
    idle.end();
    busy.end();
  });
  await busy.cmd('EHLO c');
  await busy.cmd('MAIL FROM:<a@example.com>');
  await busy.cmd('RCPT TO:<b@example.com>');
  const closing = node.close();
  const r = await idle.read();
  assert.equal(r.code, 421);
  assert.match(r.text, /^4\.3\.2 /);
  assert.equal((await busy.cmd('DATA')).code, 354);
  const done = await busy.cmd('Subject: last\r\n\r\nx\r\n.');
  assert.equal(done.code, 250, 'the open transaction is finished');
  const after = await busy.cmd('MAIL FROM:<a@example.com>');
  assert.equal(after.code, 421);
  await closing;
});

test('a queue that cannot store the message answers 452 4.3.1, never 250', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@example.com>');
  await c.cmd('RCPT TO:<b@example.com>');
  await c.cmd('DATA');
  await node.queue.close(); // every write now fails
  const r = await c.cmd('Subject: x\r\n\r\nbody\r\n.');
  assert.equal(r.code, 452);
  assert.match(r.text, /^4\.3\.1 /);
  assert.equal(node.ctx.counters.messagesAccepted, 0);
});

test('addresses must be valid UTF-8 (553 5.6.7), and 8-bit needs SMTPUTF8', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  const raw = async (...parts: Array<string | number[]>): Promise<{ code: number; text: string }> => {
    c.write(Buffer.concat([...parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))), Buffer.from('\r\n')]));
    return c.read();
  };
  // A lone continuation byte, a truncated sequence, an overlong '/', a UTF-16 surrogate.
  for (const bad of [[0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
    const r = await raw('MAIL FROM:<a', bad, 'b@example.com> SMTPUTF8');
    assert.equal(r.code, 553, `MAIL with ${bad.join(',')}`);
    assert.match(r.text, /^5\.6\.7 /);
  }
  const p = await raw('MAIL FROM:<a@example.com> SMTPUTF8 ENVID=', [0xe9]);
  assert.equal(p.code, 553, 'a parameter too');
  assert.equal((await c.cmd('MAIL FROM:<a@example.com> AUTH=\u00e9')).code, 501, 'AUTH= is xtext');
  // Valid UTF-8 without SMTPUTF8 is refused too.
  const u = await c.cmd('MAIL FROM:<j\u00f6rg@example.com>');
  assert.equal(u.code, 553);
  assert.match(u.text, /^5\.6\.7 /);
  assert.equal((await c.cmd('MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8')).code, 250);
  const r1 = await raw('RCPT TO:<b', [0xff, 0xfe], '@example.com>');
  assert.equal(r1.code, 553, 'RCPT with invalid UTF-8');
  assert.match(r1.text, /^5\.6\.7 /);
  assert.equal((await c.cmd('RCPT TO:<m\u00fcller@example.com>')).code, 250);
  const h = await raw('HELO ', [0xc3, 0x28]);
  assert.equal(h.code, 501, 'other commands: 501');
  await c.cmd('RSET');
  await c.cmd('MAIL FROM:<a@example.com>');
  const r2 = await c.cmd('RCPT TO:<m\u00fcller@example.com>');
  assert.equal(r2.code, 553, 'RCPT: 8-bit without SMTPUTF8');
  assert.match(r2.text, /^5\.6\.7 /);
  assert.equal((await c.cmd('RCPT TO:<b@example.com>')).code, 250);
  await c.cmd('DATA');
  const q = await c.cmd('x\r\n.');
  const m = node.queue.get(queuedId(q.text))!;
  assert.deepEqual(m.recipients.map((r) => r.address), ['b@example.com']);
});

test('local-part routing (%, !, quoted @) to a local domain: 553 5.1.3 for untrusted clients, unchanged for trusted', async (t) => {
  const node = await startTestNode(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_LOCAL_DOMAINS: 'local.example' });
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  await c.cmd('EHLO c');
  await c.cmd('MAIL FROM:<a@elsewhere.example>');
  for (const rcpt of ['victim%ext.example@local.example', 'ext.example!victim@local.example', '"v@ext.example"@local.example']) {
    const r = await c.cmd(`RCPT TO:<${rcpt}>`);
    assert.equal(r.code, 553, rcpt);
    assert.match(r.text, /^5\.1\.3 .*local part/);
  }
  assert.equal((await c.cmd('RCPT TO:<"plain quoted"@local.example>')).code, 250);
  assert.equal(node.ctx.counters.recipientsRejected, 3);
  // From a trusted network the same addresses pass unchanged.
  const trusted = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'local.example' });
  const d = await session(trusted.ports.smtpPort);
  t.after(() => d.end());
  await d.cmd('EHLO c');
  await d.cmd('MAIL FROM:<a@elsewhere.example>');
  assert.equal((await d.cmd('RCPT TO:<victim%ext.example@local.example>')).code, 250);
});

test('Authentication-Results with our authserv-id are removed from untrusted mail (RFC 8601 §5), kept from trusted networks', async (t) => {
  const msg = 'Authentication-Results: MX.test.example; dmarc=pass header.from=bank.example\r\n' +
    'Authentication-Results: elsewhere.example; spf=none\r\nSubject: s\r\n\r\nbody\r\n.';
  const send = async (port: number): Promise<string> => {
    const c = await session(port);
    t.after(() => c.end());
    await c.cmd('EHLO c');
    await c.cmd('MAIL FROM:<a@example.com>');
    await c.cmd('RCPT TO:<b@local.example>');
    await c.cmd('DATA');
    const r = await c.cmd(msg);
    assert.equal(r.code, 250);
    return queuedId(r.text);
  };
  const node = await startTestNode(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_LOCAL_DOMAINS: 'local.example' });
  const body = node.queue.withBody(await send(node.ports.smtpPort), (b) => b.toString('latin1'));
  assert.ok(!/dmarc=pass/.test(body), body);
  assert.match(body, /\r\nAuthentication-Results: elsewhere\.example; spf=none\r\nSubject: s\r\n\r\nbody\r\n$/);
  const trusted = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'local.example' });
  const kept = trusted.queue.withBody(await send(trusted.ports.smtpPort), (b) => b.toString('latin1'));
  assert.match(kept, /dmarc=pass/);
  // With a filter stage the filters already get the message without them.
  const filter = fileURLToPath(new URL('../../../test/fixtures/test-filter.mjs', import.meta.url));
  const filtered = await startTestNode(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_LOCAL_DOMAINS: 'local.example', POSTERN_FILTER_MODULES: filter, POSTERN_WORKERS: '1' });
  const f = filtered.queue.withBody(await send(filtered.ports.smtpPort), (b) => b.toString('latin1'));
  assert.ok(!/dmarc=pass/.test(f), f);
  assert.match(f, /Authentication-Results: elsewhere\.example; spf=none\r\nSubject: s\r\n\r\nbody\r\n$/);
});

test('half-close: a client that sends its transaction and QUIT, then shuts its write side, still gets every reply', async (t) => {
  const node = await startTestNode(t);
  const c = await session(node.ports.smtpPort);
  t.after(() => c.end());
  c.socket.end('EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n');
  const rs = await c.readN(6);
  assert.deepEqual(rs.map((r) => r.code), [250, 250, 250, 354, 250, 221]);
  assert.equal(node.queue.counts().total, 1);
  assert.ok(await c.closedByServer());
  // Without QUIT, and with an unfinished message: the replies owed are written, nothing is
  // queued from the cut message, and the server closes its side too.
  const d = await session(node.ports.smtpPort);
  t.after(() => d.end());
  d.socket.end('EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: cut\r\n\r\nno end');
  assert.deepEqual((await d.readN(4)).map((r) => r.code), [250, 250, 250, 354]);
  assert.ok(await d.closedByServer());
  assert.equal(node.queue.counts().total, 1);
});

test('a command line has a deadline from its first byte: a client dribbling a byte every 100 ms is cut', async (t) => {
  const node = await startTestNode(t, { POSTERN_COMMAND_TIMEOUT_MS: '1000' });
  const slow = await session(node.ports.smtpPort);
  const idle = await session(node.ports.smtpPort);
  t.after(() => {
    slow.end();
    idle.end();
  });
  const started = Date.now();
  const dribble = setInterval(() => { if (!slow.closed) slow.write('X'); }, 100);
  t.after(() => clearInterval(dribble));
  const r = await slow.read(4000);
  clearInterval(dribble);
  const took = Date.now() - started;
  assert.equal(r.code, 421);
  assert.match(r.text, /^4\.4\.2 /);
  assert.ok(took >= 900 && took < 3000, `cut after ${took} ms`);
  assert.ok(await slow.closedByServer());
  // Waiting between commands is the idle timeout's business (5 minutes), not this deadline.
  assert.equal((await idle.cmd('NOOP')).code, 250);
  // A line split over a few chunks in time is fine.
  idle.write('NO');
  await new Promise((res) => setTimeout(res, 300));
  assert.equal((await idle.cmd('OP')).code, 250);
});

test('at the connection limit a new client is served: the session silent longest gets 421 4.7.0', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_CONNECTIONS: '5', POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const cs: RawClient[] = [];
  t.after(() => cs.forEach((c) => c.end()));
  for (let i = 0; i < 5; i++) cs.push(await session(node.ports.smtpPort));
  assert.equal((await cs[0]!.cmd('EHLO c')).code, 250); // cs[1] is now the one silent longest
  const fresh = await RawClient.connect(node.ports.smtpPort);
  cs.push(fresh);
  assert.equal((await fresh.read()).code, 220, 'the new client is served');
  const r = await cs[1]!.read();
  assert.equal(r.code, 421);
  assert.match(r.text, /^4\.7\.0 /);
  cs[1]!.write('NOOP\r\n'); // bytes from an evicted client must not bring it back into the count
  assert.ok(await cs[1]!.closedByServer());
  for (const i of [0, 2, 3, 4]) assert.equal((await cs[i]!.cmd('NOOP')).code, 250, `session ${i} untouched`);
  assert.equal((await fresh.cmd('EHLO c')).code, 250);
  assert.equal(node.smtp.sessionCount, 5);
});

test('stress mode: past POSTERN_STRESS_PERCENT of the limit, deadlines shrink to POSTERN_STRESS_TIMEOUT_MS', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_CONNECTIONS: '10', POSTERN_STRESS_PERCENT: '30', POSTERN_STRESS_TIMEOUT_MS: '1000', POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const a = await session(node.ports.smtpPort);
  const b = await session(node.ports.smtpPort);
  t.after(() => {
    a.end();
    b.end();
  });
  await new Promise((res) => setTimeout(res, 1300));
  assert.equal((await a.cmd('NOOP')).code, 250, 'not stressed yet: the 5-minute idle timeout holds');
  assert.equal(node.ctx.stressed, false);
  const c = await session(node.ports.smtpPort); // 3 of 10: stressed
  t.after(() => c.end());
  assert.equal(node.ctx.stressed, true);
  const started = Date.now();
  const rs = await Promise.all([a.read(4000), b.read(4000), c.read(4000)]);
  assert.deepEqual(rs.map((r) => r.code), [421, 421, 421]);
  assert.match(rs[0]!.text, /^4\.4\.2 /);
  assert.ok(Date.now() - started < 2500);
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(node.ctx.stressed, false, 'stress ends with the connections');
});

test('pregreet: with POSTERN_GREET_DELAY_MS a client that talks before the greeting gets 554 5.5.1; a patient one is served', async (t) => {
  const node = await startTestNode(t, { POSTERN_GREET_DELAY_MS: '400', POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  const rude = await RawClient.connect(node.ports.smtpPort);
  const patient = await RawClient.connect(node.ports.smtpPort);
  t.after(() => {
    rude.end();
    patient.end();
  });
  rude.write('EHLO spam.example\r\n');
  const r = await rude.read();
  assert.equal(r.code, 554);
  assert.match(r.text, /^5\.5\.1 /);
  assert.ok(await rude.closedByServer());
  const started = Date.now();
  assert.equal((await patient.read()).code, 220);
  assert.ok(Date.now() - started >= 250, 'the greeting was held back');
  assert.equal((await patient.cmd('EHLO c')).code, 250);
  assert.equal(node.ctx.counters.connectionsRejected, 1);
  // Trusted clients are greeted at once, however early they talk.
  const trusted = await startTestNode(t, { POSTERN_GREET_DELAY_MS: '5000' });
  const c = await RawClient.connect(trusted.ports.smtpPort);
  t.after(() => c.end());
  c.write('NOOP\r\n');
  assert.deepEqual((await c.readN(2, 2000)).map((x) => x.code), [220, 250]);
});

test('IPv6: the per-address limit counts ::1 connections together (by /64)', async (t) => {
  let node;
  try {
    node = await startTestNode(t, { POSTERN_SMTP_HOST: '::1', POSTERN_MAX_CONNECTIONS_PER_IP: '2', POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' });
  } catch (err) {
    t.skip(`no IPv6 loopback: ${(err as Error).message}`);
    return;
  }
  const port = node.ports.smtpPort;
  const a = await RawClient.connect(port, { host: '::1' });
  const b = await RawClient.connect(port, { host: '::1' });
  t.after(() => {
    a.end();
    b.end();
  });
  assert.equal((await a.read()).code, 220);
  assert.equal((await b.read()).code, 220);
  const c = await RawClient.connect(port, { host: '::1' });
  t.after(() => c.end());
  const r = await c.read();
  assert.equal(r.code, 421);
  assert.match(r.text, /your address/);
});

test('at the connection limit an untrusted newcomer never pushes out a trusted client, however silent', async (t) => {
  const node = await startTestNode(t, { POSTERN_MAX_CONNECTIONS: '3', POSTERN_TRUSTED_NETWORKS: '127.0.0.1/32' });
  const cs: RawClient[] = [];
  t.after(() => cs.forEach((c) => c.end()));
  const trusted = await RawClient.connect(node.ports.smtpPort);
  cs.push(trusted);
  assert.equal((await trusted.read()).code, 220);
  const u1 = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.2' });
  const u2 = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.2' });
  cs.push(u1, u2);
  assert.equal((await u1.read()).code, 220);
  assert.equal((await u2.read()).code, 220);
  assert.equal((await u1.cmd('EHLO u1')).code, 250);
  assert.equal((await u2.cmd('EHLO u2')).code, 250); // silent longest: trusted, then u1
  const u3 = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.3' });
  cs.push(u3);
  assert.equal((await u3.read()).code, 220, 'the newcomer is served');
  assert.equal((await u1.read()).code, 421, 'by closing the untrusted session silent longest');
  assert.equal((await trusted.cmd('NOOP')).code, 250, 'the trusted client keeps its session');
  // A trusted newcomer may push out an untrusted session (u2 is silent longest now).
  const t2 = await RawClient.connect(node.ports.smtpPort);
  cs.push(t2);
  assert.equal((await t2.read()).code, 220);
  assert.equal((await u2.read()).code, 421);
  const t3 = await RawClient.connect(node.ports.smtpPort);
  cs.push(t3);
  assert.equal((await t3.read()).code, 220);
  assert.equal((await u3.read()).code, 421);
  // Only trusted sessions left: an untrusted newcomer is refused, nobody is closed for it.
  const u4 = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.4' });
  cs.push(u4);
  const refused = await u4.read();
  assert.equal(refused.code, 421);
  assert.match(refused.text, /Too many connections/);
  for (const c of [trusted, t2, t3]) assert.equal((await c.cmd('NOOP')).code, 250);
  assert.equal(node.smtp.sessionCount, 3);
});
