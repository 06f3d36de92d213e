// A node with a shaping file (POSTERN_SHAPING) against scripted servers: a site's
// recipients_per_transaction splits one message into several transactions, pipelining = false
// and messages_per_connection hold on the wire; a blocklist reply suspends the source × site,
// emits shaping.suspended through the event webhooks, and the next message to the site is
// deferred untried; the file is re-read when it changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import { startHttpReceiver } from '../helpers/http-receiver.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';

test('a site splits recipients per transaction, does not pipeline, and closes each connection after its messages', async (t) => {
  const srv = await startScriptedServer(t);
  const file = join(tmpdir(t), 'shaping.toml');
  writeFileSync(file, `[site.split]\ndomains = ["shaped.example"]\nrecipients_per_transaction = 2\npipelining = false\nmessages_per_connection = 1\n`);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `shaped.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: file }, { delivery: { pollIntervalMs: 50 } });
  const rcpts = ['a', 'b', 'c', 'd', 'e'].map((l) => `${l}@shaped.example`);
  await sendMessage(node.ports.smtpPort, 's@example.org', rcpts, 'Subject: split\r\n\r\nhello\r\n');
  await waitFor('delivered', () => node.queue.counts().total === 0, 10_000);
  assert.deepEqual(srv.messages().map((m) => m.rcptTo.length), [2, 2, 1], 'three transactions of at most two recipients');
  assert.deepEqual(srv.messages().flatMap((m) => m.accepted), rcpts.map((r) => `RCPT TO:<${r}>`));
  assert.equal(srv.sessions.length, 3, 'messages_per_connection = 1: a connection per transaction');
  for (const s of srv.sessions) for (const b of s.batches) assert.equal(b.length, 1, `pipelined although pipelining = false: ${JSON.stringify(b)}`);
  assert.equal(node.delivery!.counters.bounced, 0);
});

test('a blocklist reply suspends the source at the site, emits shaping.suspended, and defers the next message untried', async (t) => {
  const srv = await startScriptedServer(t, { reply: (cmd) => (cmd.startsWith('RCPT') ? '554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org' : undefined) });
  const events: Array<Record<string, unknown>> = [];
  const receiver = await startHttpReceiver(t, (_req, res, body) => {
    events.push(...(JSON.parse(body.toString()) as { events: Array<Record<string, unknown>> }).events);
    res.end('ok');
  });
  const file = join(tmpdir(t), 'shaping.toml');
  writeFileSync(file, `[site.listed]\ndomains = ["listed.example"]\nblocklist_suspend_for = "1h"\n`);
  const node = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `listed.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: file, POSTERN_EVENTS_URL: `${receiver.origin}/events` },
    { delivery: { pollIntervalMs: 50 } },
  );
  await sendMessage(node.ports.smtpPort, 's@example.org', ['a@listed.example'], 'Subject: one\r\n\r\nhello\r\n');
  await waitFor('the suspension event', () => events.some((e) => e.type === 'shaping.suspended'), 10_000);
  const ev = events.find((e) => e.type === 'shaping.suspended')!;
  assert.equal(ev.site, 'listed');
  assert.equal(ev.egress, 'default');
  assert.equal(ev.reason, 'blocklist');
  assert.equal(ev.code, 554);
  assert.ok(Date.parse(ev.until as string) > Date.now() + 3_500_000, `until ${String(ev.until)}`);
  const transactions = srv.sessions.flatMap((s) => s.commands).filter((c) => c.startsWith('MAIL')).length;
  const id = await sendMessage(node.ports.smtpPort, 's@example.org', ['b@listed.example'], 'Subject: two\r\n\r\nhello\r\n');
  await waitFor('the second message deferred', () => node.queue.get(id)?.recipients[0]?.lastReply !== undefined && node.queue.get(id)?.state === 'ready', 10_000);
  const m = node.queue.get(id)!;
  const r = m.recipients[0]!;
  assert.equal(r.state, 'pending');
  assert.equal(r.attempts, 0, 'untried: no attempt counted');
  assert.match(r.lastReply!.text, /source default is suspended at listed until/);
  assert.ok(m.nextAttemptAt > Date.now() + 3_500_000, 'due when the suspension ends');
  assert.equal(srv.sessions.flatMap((s) => s.commands).filter((c) => c.startsWith('MAIL')).length, transactions, 'nothing was sent to the suspended site');
});

test('the shaping file is re-read when it changes: a site added to the running node applies to the next message', async (t) => {
  const srv = await startScriptedServer(t);
  const file = join(tmpdir(t), 'shaping.toml');
  writeFileSync(file, `[site.other]\ndomains = ["other.example"]\n`);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `later.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: file }, { delivery: { pollIntervalMs: 50, shapingPollMs: 50 } });
  const rcpts = ['a@later.example', 'b@later.example'];
  await sendMessage(node.ports.smtpPort, 's@example.org', rcpts, 'Subject: 1\r\n\r\nhello\r\n');
  await waitFor('the first delivered', () => srv.messages().length === 1, 10_000);
  assert.equal(srv.messages()[0]!.rcptTo.length, 2);
  writeFileSync(file, `[site.other]\ndomains = ["other.example"]\n\n[site.later]\ndomains = ["later.example"]\nrecipients_per_transaction = 1\n`);
  await new Promise((r) => setTimeout(r, 300)); // a few polls
  await sendMessage(node.ports.smtpPort, 's@example.org', rcpts, 'Subject: 2\r\n\r\nhello\r\n');
  await waitFor('the second delivered', () => srv.messages().length === 3, 10_000);
  assert.deepEqual(srv.messages().map((m) => m.rcptTo.length), [2, 1, 1]);
});

test('POSTERN_DEST_RATE still paces a destination no rule names (it is the shaper default ceiling)', async (t) => {
  const srv = await startScriptedServer(t);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `paced.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_DEST_RATE: '10/s' }, { delivery: { pollIntervalMs: 50 } });
  const t0 = performance.now();
  for (let i = 0; i < 8; i++) await sendMessage(node.ports.smtpPort, 's@example.org', [`r${i}@paced.example`], `Subject: ${i}\r\n\r\nhello\r\n`);
  await waitFor('all delivered', () => srv.messages().length === 8, 20_000);
  const took = performance.now() - t0;
  assert.ok(took >= 650, `8 messages at 10/s took ${Math.round(took)} ms: at least 7 intervals of 100 ms`);
  assert.equal(node.delivery!.counters.bounced, 0);
});
