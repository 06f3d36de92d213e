// Recipient validation at RCPT over real sockets on 127.0.0.1 (issue 13 items 4 and 5): the
// recipient map, LMTP verification, Maildir mailboxes made only where configured, the Maildir
// name rules applied at RCPT (no accept-then-bounce), the untrusted recipient cap, and RET=FULL
// from untrusted clients recorded as HDRS.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RawClient } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { startTestNode, writeFile } from '../helpers/node.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import type { PosternNode } from '../../src/main.js';

/** 127.0.0.1 is untrusted with this (no relay, untrusted limits). */
const UNTRUSTED = { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24' };
const fast = { delivery: { pollIntervalMs: 50 } };

async function session(node: PosternNode, t: TestContext): Promise<RawClient> {
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  assert.equal((await c.read()).code, 220);
  assert.equal((await c.cmd('EHLO client.test')).code, 250);
  return c;
}

function queuedId(text: string): string {
  const m = /queued as (\S+)/.exec(text);
  assert.ok(m, `no queue id in ${JSON.stringify(text)}`);
  return m[1]!;
}

async function rcptCodes(c: RawClient, addresses: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const a of addresses) {
    const r = await c.cmd(`RCPT TO:<${a}>`);
    out.push(`${r.code} ${r.text.split(' ')[0]}`);
  }
  return out;
}

test('without a map, an untrusted client cannot make a maildir route create mailboxes (550 5.1.1 at RCPT)', async (t) => {
  const root = tmpdir(t);
  mkdirSync(join(root, 'local.test', 'alice'), { recursive: true });
  const node = await startTestNode(t, { ...UNTRUSTED, POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `local.test=maildir:${root}` }, fast);
  const c = await session(node, t);
  assert.equal((await c.cmd('MAIL FROM:<x@remote.test>')).code, 250);
  assert.deepEqual(await rcptCodes(c, ['u1@local.test', 'u2@local.test', 'u3@local.test', 'u4@local.test', 'alice@local.test']), ['550 5.1.1', '550 5.1.1', '550 5.1.1', '550 5.1.1', '250 2.1.5']);
  assert.equal((await c.cmd('DATA')).code, 354);
  const id = queuedId((await c.cmd('Subject: hi\r\n\r\nhello\r\n.')).text);
  assert.deepEqual(node.queue.get(id)?.recipients.map((r) => r.address), ['alice@local.test']);
  await waitFor('delivery', () => existsSync(join(root, 'local.test', 'alice', 'new')) && readdirSync(join(root, 'local.test', 'alice', 'new')).length === 1);
  assert.deepEqual(readdirSync(join(root, 'local.test')), ['alice'], 'no other mailbox folder was created');
});

test('recipient map: unknown local recipients get 550 5.1.1 from everyone, aliases expand, only map mailboxes are created', async (t) => {
  const root = tmpdir(t);
  const map = writeFile(t, 'recipients', 'alice@local.test\nsales@local.test: alice@local.test, bob@local.test, partner@remote.test\nbob@local.test\n');
  for (const env of [UNTRUSTED, {}]) {
    const node = await startTestNode(t, { ...env, POSTERN_RECIPIENTS: map, POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `local.test=maildir:${root}` }, fast);
    const c = await session(node, t);
    assert.equal((await c.cmd('MAIL FROM:<x@remote.test>')).code, 250);
    assert.deepEqual(await rcptCodes(c, ['nobody@local.test', 'alice+tag@local.test', 'Sales@local.test', 'alice@local.test', 'Postmaster']), ['550 5.1.1', '250 2.1.5', '250 2.1.5', '250 2.1.5', '250 2.1.5']);
    assert.equal((await c.cmd('DATA')).code, 354);
    const id = queuedId((await c.cmd('Subject: hi\r\n\r\nhello\r\n.')).text);
    const m = node.queue.get(id)!;
    // alice@local.test came via the alias already: kept once.
    assert.deepEqual(
      m.recipients.map((r) => [r.address, r.orcpt]),
      [['alice+tag@local.test', undefined], ['alice@local.test', 'rfc822;Sales@local.test'], ['bob@local.test', 'rfc822;Sales@local.test'], ['partner@remote.test', 'rfc822;Sales@local.test'], ['postmaster@mx.test.example', undefined]],
    );
    await c.cmd('QUIT');
  }
  await waitFor('deliveries', () => existsSync(join(root, 'local.test', 'bob', 'new')) && existsSync(join(root, 'local.test', 'alice', 'new')));
  assert.deepEqual(readdirSync(join(root, 'local.test')).sort(), ['alice', 'bob']);
});

test('a catch-all on a maildir route accepts only where a folder exists; a catch-all alias collects the rest in one mailbox', async (t) => {
  const root = tmpdir(t);
  mkdirSync(join(root, 'catch.test', 'known'), { recursive: true });
  const map = writeFile(t, 'recipients', '@catch.test\nabuse@local.test\n@local.test: abuse@local.test\n');
  const node = await startTestNode(t, { ...UNTRUSTED, POSTERN_RECIPIENTS: map, POSTERN_LOCAL_DOMAINS: 'catch.test,local.test', POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `*.test=maildir:${root}` }, fast);
  const c = await session(node, t);
  await c.cmd('MAIL FROM:<x@remote.test>');
  assert.deepEqual(await rcptCodes(c, ['random@catch.test', 'known@catch.test', 'random@local.test']), ['550 5.1.1', '250 2.1.5', '250 2.1.5']);
  await c.cmd('DATA');
  const id = queuedId((await c.cmd('x\r\n.')).text);
  assert.deepEqual(node.queue.get(id)!.recipients.map((r) => r.address), ['known@catch.test', 'abuse@local.test']);
  await waitFor('deliveries', () => existsSync(join(root, 'local.test', 'abuse', 'new')) && existsSync(join(root, 'catch.test', 'known', 'new')));
  assert.deepEqual(readdirSync(join(root, 'catch.test')), ['known']);
});

test('a relay-routed domain is outside the map; a domain routed to maildir is inside it even when not in POSTERN_LOCAL_DOMAINS', async (t) => {
  const root = tmpdir(t);
  const map = writeFile(t, 'recipients', 'alice@local.test\n');
  const node = await startTestNode(t, { POSTERN_RECIPIENTS: map, POSTERN_ROUTES: `home.test=maildir:${root};far.test=smtp:127.0.0.1:9` });
  const c = await session(node, t);
  await c.cmd('MAIL FROM:<x@local.test>');
  assert.deepEqual(await rcptCodes(c, ['anyone@far.test', 'anyone@home.test']), ['250 2.1.5', '550 5.1.1']);
});

test('the map is re-read when the file changes; a broken new file keeps the old map', async (t) => {
  const map = writeFile(t, 'recipients', 'alice@local.test\n');
  const node = await startTestNode(t, { ...UNTRUSTED, POSTERN_RECIPIENTS: map, POSTERN_LOCAL_DOMAINS: 'local.test' });
  const c = await session(node, t);
  await c.cmd('MAIL FROM:<x@remote.test>');
  assert.deepEqual(await rcptCodes(c, ['carol@local.test']), ['550 5.1.1']);
  // The new file is longer, so the change is seen even within one mtime tick.
  writeFileSync(map, 'alice@local.test\ncarol@local.test\n');
  await waitFor('the watcher to load carol', () => node.ctx.recipients?.current.mailboxes.has('carol@local.test') === true, 10_000);
  assert.deepEqual(await rcptCodes(c, ['carol@local.test']), ['250 2.1.5']);
  writeFileSync(map, 'alice@local.test\ncarol@local.test\ndave@local.test: dave@local.test, broken\n');
  const err = node.reloadRecipients();
  assert.match(String(err?.message), /recipients:3: alias target "broken" is not an address/);
  assert.deepEqual(await rcptCodes(c, ['carol@local.test', 'dave@local.test']), ['250 2.1.5', '550 5.1.1'], 'the previous map is kept');
});

test('backscatter: what the Maildir transport would refuse is refused at RCPT (553 5.1.3), from every client', async (t) => {
  const root = tmpdir(t);
  for (const env of [UNTRUSTED, {}]) {
    const node = await startTestNode(t, { ...env, POSTERN_MAILDIR_CREATE: 'true', POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_ROUTES: `local.test=maildir:${root}` });
    const c = await session(node, t);
    await c.cmd('MAIL FROM:<forged@victim.test> RET=FULL SMTPUTF8');
    assert.deepEqual(await rcptCodes(c, ['"john doe"@local.test', '-dash@local.test', 'a=b@local.test', '+x@local.test', 'ü@local.test', 'ok.name@local.test']), ['553 5.1.3', '553 5.1.3', '553 5.1.3', '553 5.1.3', '553 5.1.3', '250 2.1.5']);
  }
});

test('RET=FULL from an untrusted, unauthenticated client is recorded as HDRS; a trusted client keeps FULL', async (t) => {
  for (const [env, want] of [[UNTRUSTED, 'HDRS'], [{}, 'FULL']] as const) {
    const node = await startTestNode(t, { ...env, POSTERN_LOCAL_DOMAINS: 'local.test' });
    const c = await session(node, t);
    assert.equal((await c.cmd('MAIL FROM:<forged@victim.test> RET=FULL')).code, 250);
    assert.equal((await c.cmd('RCPT TO:<someone@local.test>')).code, 250);
    await c.cmd('DATA');
    const id = queuedId((await c.cmd('Subject: x\r\n\r\nbig body\r\n.')).text);
    assert.equal(node.queue.get(id)!.ret, want);
  }
});

test('untrusted clients get at most POSTERN_MAX_RECIPIENTS_UNTRUSTED recipients (452 4.5.3); trusted ones POSTERN_MAX_RECIPIENTS', async (t) => {
  for (const [env, limit] of [[UNTRUSTED, 100], [{}, 150]] as const) {
    const node = await startTestNode(t, { ...env, POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_MAX_RECIPIENTS: '150' });
    const c = await session(node, t);
    await c.cmd('MAIL FROM:<x@remote.test>');
    // Pipelined: one write, then every reply (few refusals: each counts against POSTERN_MAX_ERRORS).
    c.write(Array.from({ length: limit + 5 }, (_, i) => `RCPT TO:<u${i}@local.test>\r\n`).join(''));
    const replies = await c.readN(limit + 5);
    assert.equal(replies.filter((r) => r.code === 250).length, limit);
    assert.equal(replies[limit]!.code, 452);
    assert.match(replies[limit]!.text, /^4\.5\.3 /);
  }
  // Duplicates do not multiply a message either.
  const node = await startTestNode(t, { ...UNTRUSTED, POSTERN_LOCAL_DOMAINS: 'local.test' });
  const c = await session(node, t);
  await c.cmd('MAIL FROM:<x@remote.test>');
  c.write('RCPT TO:<a@local.test>\r\n'.repeat(149) + 'RCPT TO:<a@LOCAL.test>\r\n');
  assert.ok((await c.readN(150)).every((r) => r.code === 250));
  await c.cmd('DATA');
  const id = queuedId((await c.cmd('x\r\n.')).text);
  assert.equal(node.queue.get(id)!.recipients.length, 1);
});

test('POSTERN_RCPT_VERIFY=lmtp asks the LMTP server: 5xx → 550 5.1.1, answers cached, 4xx → 450 4.1.1, silence → 451 4.4.1', async (t) => {
  const lmtp = await startScriptedServer(t, {
    mode: 'lmtp',
    reply: (cmd) => {
      if (/^RCPT TO:<(alice|bob)@/i.test(cmd)) return '250 2.1.5 OK';
      if (/^RCPT TO:<busy@/i.test(cmd)) return '451 4.3.0 Temporary failure';
      if (/^RCPT TO:<slow@/i.test(cmd)) return null;
      if (cmd.startsWith('RCPT')) return '550 5.1.1 <x> User doesn\'t exist';
      return undefined;
    },
  });
  const node = await startTestNode(t, { ...UNTRUSTED, POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_ROUTES: `local.test=lmtp:127.0.0.1:${lmtp.port}/tls=none`, POSTERN_RCPT_VERIFY: 'lmtp', POSTERN_RCPT_VERIFY_TIMEOUT_MS: '500' });
  const c = await session(node, t);
  await c.cmd('MAIL FROM:<x@remote.test>');
  assert.deepEqual(await rcptCodes(c, ['alice@local.test', 'nobody@local.test', 'busy@local.test']), ['250 2.1.5', '550 5.1.1', '450 4.1.1']);
  const started = Date.now();
  assert.deepEqual(await rcptCodes(c, ['slow@local.test']), ['451 4.4.1']);
  assert.ok(Date.now() - started < 3000, 'bounded by POSTERN_RCPT_VERIFY_TIMEOUT_MS');
  const sessions = lmtp.sessions.length;
  assert.equal(sessions, 4);
  assert.deepEqual(lmtp.sessions[0]!.commands.slice(0, 3), ['LHLO mx.test.example', 'MAIL FROM:<>', 'RCPT TO:<alice@local.test>']);
  // Cached: a known and an unknown address again, no new connection; a temporary answer is not cached.
  assert.deepEqual(await rcptCodes(c, ['ALICE@local.test', 'nobody@local.test', 'busy@local.test']), ['250 2.1.5', '550 5.1.1', '450 4.1.1']);
  assert.equal(lmtp.sessions.length, sessions + 1);
  await c.cmd('DATA');
  const id = queuedId((await c.cmd('x\r\n.')).text);
  // The local part is compared exactly (it may be case-sensitive), so ALICE is a second recipient.
  assert.deepEqual(node.queue.get(id)!.recipients.map((r) => r.address), ['alice@local.test', 'ALICE@local.test']);
});

test('LMTP verification of an unreachable server is a temporary 451 4.4.1', async (t) => {
  // A port that was just free: nothing listens there.
  const gone = await startScriptedServer(t, { mode: 'lmtp' });
  const port = gone.port;
  await gone.close();
  const node = await startTestNode(t, { POSTERN_LOCAL_DOMAINS: 'local.test', POSTERN_ROUTES: `local.test=lmtp:127.0.0.1:${port}`, POSTERN_RCPT_VERIFY: 'lmtp' });
  const c = await session(node, t);
  await c.cmd('MAIL FROM:<x@remote.test>');
  assert.deepEqual(await rcptCodes(c, ['alice@local.test']), ['451 4.4.1']);
});

test('the Maildir transport creates only the mailboxes it may: others get 550 5.1.1 unless their folder exists', async (t) => {
  const { MaildirTransport } = await import('../../src/delivery/maildir-transport.js');
  const { deliveryRequest } = await import('../helpers/scripted-server.js');
  const root = tmpdir(t);
  mkdirSync(join(root, 'local.test', 'old'), { recursive: true });
  const tr = new MaildirTransport({ mayCreate: (a) => a === 'listed@local.test' });
  const res = await tr.deliver({ kind: 'maildir', key: `maildir:${root}`, root }, deliveryRequest('s@remote.test', ['listed@local.test', 'stranger@local.test', 'old@local.test'], 'Subject: x\r\n\r\nhi\r\n'));
  assert.deepEqual(res.map((r) => [r.address, r.kind, r.reply.code, r.reply.enhanced]), [
    ['listed@local.test', 'delivered', 250, '2.0.0'],
    ['stranger@local.test', 'failed', 550, '5.1.1'],
    ['old@local.test', 'delivered', 250, '2.0.0'],
  ]);
  assert.deepEqual(readdirSync(join(root, 'local.test')).sort(), ['listed', 'old']);
});

test('a domain routed to a pipe is inside the recipient map: an unknown user is refused at RCPT, not bounced by the program later', async (t) => {
  const map = writeFile(t, 'recipients', 'alice@pipe.test\n');
  // Delivery is off: only RCPT is asked. As root a pipe route must name a user (checked at start).
  const user = (process.getuid?.() ?? 0) === 0 ? 'user=nobody ' : '';
  const node = await startTestNode(t, { POSTERN_RECIPIENTS: map, POSTERN_ROUTES: `pipe.test=pipe:${user}/bin/cat {recipient}` });
  const c = await session(node, t);
  await c.cmd('MAIL FROM:<x@far.test>');
  assert.deepEqual(await rcptCodes(c, ['alice@pipe.test', 'ghost@pipe.test']), ['250 2.1.5', '550 5.1.1']);
});
