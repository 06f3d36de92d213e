// Choosing the source pool, against real nodes on loopback (sources bound to 127.0.0.2 and
// 127.0.0.3): a trusted client's X-Postern-Pool picks the pool and never leaves the node; an
// untrusted client's is removed and ignored; a pool the node does not have is refused over
// SMTP (554 5.6.0, nothing stored) and over HTTP (422); the API's "pool" field is stored and
// shown; warm-up counts survive a restart on the same data dir; a spilling pool sends mail
// over one source's budget from another source.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer, type ScriptedServer } from '../helpers/scripted-server.js';
import { openTransaction, RawClient, sendMessage } from '../helpers/smtp-client.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';
import { runCli } from '../helpers/cli.js';
import { fileURLToPath } from 'node:url';
import type { MailEvent } from '../../src/queue/events.js';

const TODAY = new Date().toISOString().slice(0, 10);

const SOURCES = `[source.ip2]
address = "127.0.0.2"
ehlo = "mta2.test.example"

[source.ip3]
address = "127.0.0.3"
ehlo = "mta3.test.example"
`;

const FILE = `${SOURCES}
[pool.bulk]
sources = { ip2 = 1 }

[pool.main]
sources = { ip3 = 1 }
default = true
`;

function shapingFile(t: TestContext, text: string): string {
  const file = join(tmpdir(t), 'shaping.toml');
  writeFileSync(file, text);
  return file;
}

const addr = (a: string): string => a.replace(/^::ffff:/, '');

/** Each delivered message's Subject → the peer address the receiver saw and its raw bytes. */
function delivered(srv: ScriptedServer): Map<string, { address: string; raw: string }> {
  const out = new Map<string, { address: string; raw: string }>();
  for (const s of srv.sessions) {
    for (const m of s.messages) {
      const raw = m.body.toString('latin1');
      out.set(/^Subject: (.*)$/m.exec(raw)![1]!.trim(), { address: addr(s.remoteAddress), raw });
    }
  }
  return out;
}

/** One transaction over a raw session; the reply to the end of DATA. */
async function sendRaw(port: number, from: string, to: string, message: string): Promise<{ code: number; text: string }> {
  const c = await RawClient.connect(port);
  try {
    await c.read();
    await c.cmd('EHLO client.test.example');
    assert.equal((await c.cmd(`MAIL FROM:<${from}>`)).code, 250);
    assert.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    const r = await c.cmd(message.replace(/\r?\n/g, '\r\n') + '\r\n.', 10_000);
    return { code: r.code, text: r.text };
  } finally {
    c.end();
  }
}

test('a trusted client\'s X-Postern-Pool picks the pool: the receiver sees its bound address and no X-Postern-Pool; events name source and pool', async (t) => {
  const srv = await startScriptedServer(t);
  const events: MailEvent[] = [];
  const node = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `dest.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: shapingFile(t, FILE) },
    { delivery: { pollIntervalMs: 50, onEvent: (e) => events.push(e) } },
  );
  // 127.0.0.1 is in the default POSTERN_TRUSTED_NETWORKS.
  await sendMessage(node.ports.smtpPort, 'a@shop.example', ['r1@dest.example'], 'Subject: named\r\nX-Postern-Pool:\r\n bulk\r\n\r\nhello\r\n');
  await sendMessage(node.ports.smtpPort, 'a@shop.example', ['r2@dest.example'], 'Subject: plain\r\n\r\nhello\r\n');
  await waitFor('both delivered', () => srv.messages().length === 2 && node.queue.counts().total === 0, 15_000);
  const got = delivered(srv);
  assert.equal(got.get('named')?.address, '127.0.0.2', 'the named pool bulk (ip2) over the default pool main (ip3)');
  assert.equal(got.get('plain')?.address, '127.0.0.3', 'no header: the sender-domain rule (default pool)');
  for (const [subject, m] of got) assert.doesNotMatch(m.raw, /x-postern-pool/i, `${subject}: the header never leaves the node`);
  const ev = events.filter((e) => e.type === 'delivered').map((e) => [e.recipient, e.egress, e.pool]).sort();
  assert.deepEqual(ev, [['r1@dest.example', 'ip2', 'bulk'], ['r2@dest.example', 'ip3', 'main']]);
});

test('an untrusted client\'s X-Postern-Pool is removed and ignored, even one naming no pool', async (t) => {
  const srv = await startScriptedServer(t);
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_ROUTES: `dest.example=smtp:127.0.0.1:${srv.port}`,
    POSTERN_TLS_POLICY: 'none',
    POSTERN_SHAPING: shapingFile(t, FILE),
    POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', // loopback is not trusted here
    POSTERN_LOCAL_DOMAINS: 'dest.example',
  }, { delivery: { pollIntervalMs: 50 } });
  const a = await sendRaw(node.ports.smtpPort, 'a@shop.example', 'r1@dest.example', 'Subject: forged\r\nX-Postern-Pool: bulk\r\n\r\nhi');
  assert.equal(a.code, 250, a.text);
  const b = await sendRaw(node.ports.smtpPort, 'a@shop.example', 'r2@dest.example', 'Subject: nosuch\r\nX-Postern-Pool: nosuch\r\nx-postern-pool: again\r\n\r\nhi');
  assert.equal(b.code, 250, `ignored, not refused: ${b.text}`);
  await waitFor('both delivered', () => srv.messages().length === 2 && node.queue.counts().total === 0, 15_000);
  for (const [subject, m] of delivered(srv)) {
    assert.equal(m.address, '127.0.0.3', `${subject}: the sender-domain rule, not the header`);
    assert.doesNotMatch(m.raw, /x-postern-pool/i, `${subject}: removed`);
  }
});

test('a trusted client naming a pool the node does not have, or naming one twice, is refused at the end of DATA and nothing is stored', async (t) => {
  const node = await startTestNode(t, { POSTERN_SHAPING: shapingFile(t, FILE) });
  const cases: Array<[string, RegExp]> = [
    ['X-Postern-Pool: nosuch', /^5\.6\.0 X-Postern-Pool names no pool of this node: "nosuch"/],
    ['X-Postern-Pool: bulk\r\nX-Postern-Pool: bulk', /^5\.6\.0 X-Postern-Pool appears 2 times/],
    [`X-Postern-Pool: ${'b'.repeat(500)}`, /^5\.6\.0 X-Postern-Pool is longer than 63 characters/],
    ['X-Postern-Pool: bu lk', /^5\.6\.0 X-Postern-Pool is not a pool name/],
  ];
  for (const [header, want] of cases) {
    const r = await sendRaw(node.ports.smtpPort, 'a@shop.example', 'r@dest.example', `Subject: x\r\n${header}\r\n\r\nhi`);
    assert.equal(r.code, 554, `${header.slice(0, 40)}: ${r.text}`);
    assert.match(r.text, want);
  }
  assert.equal(node.queue.counts().total, 0, 'nothing stored');
  // BDAT ends the same way.
  const c = await openTransaction(t, node.ports.smtpPort, { helo: 'client.test.example', from: 'a@shop.example', to: 'r@dest.example' });
  const msg = 'Subject: x\r\nX-Postern-Pool: nosuch\r\n\r\nhi\r\n';
  const r = await c.cmd(`BDAT ${Buffer.byteLength(msg)} LAST\r\n${msg}`.replace(/\r\n$/, ''));
  assert.equal(r.code, 554, r.text);
  // A known pool, and the same header text in the body, are accepted.
  const ok = await sendRaw(node.ports.smtpPort, 'a@shop.example', 'r@dest.example', 'Subject: x\r\nX-Postern-Pool: bulk\r\n\r\nX-Postern-Pool: nosuch in the body');
  assert.equal(ok.code, 250, ok.text);
  const id = /queued as (\S+)/.exec(ok.text)![1]!;
  assert.equal(node.queue.get(id)!.pool, 'bulk');
  const body = node.queue.withBody(id, (b) => Buffer.from(b)).toString('latin1');
  assert.doesNotMatch(body.slice(0, body.indexOf('\r\n\r\n')), /X-Postern-Pool/i, 'the header field is gone');
  assert.match(body, /\r\n\r\nX-Postern-Pool: nosuch in the body\r\n$/, 'the body is untouched');
});

test('the header is gone before any filter sees the message: a pool named like the filter\'s reject word is accepted', async (t) => {
  // test-filter.mjs rejects any message whose bytes hold REJECTME.
  const filter = fileURLToPath(new URL('../../../test/fixtures/test-filter.mjs', import.meta.url));
  const node = await startTestNode(t, { POSTERN_SHAPING: shapingFile(t, `${FILE}\n[pool.REJECTME]\nsources = { ip2 = 1 }\n`), POSTERN_FILTER_MODULES: filter, POSTERN_WORKERS: '1', POSTERN_FILTER_TIMEOUT_MS: '5s' });
  const r = await sendRaw(node.ports.smtpPort, 'a@shop.example', 'r@dest.example', 'Subject: x\r\nX-Postern-Pool: REJECTME\r\n\r\nhi');
  assert.equal(r.code, 250, `the filter never saw the field: ${r.text}`);
  const id = /queued as (\S+)/.exec(r.text)![1]!;
  assert.equal(node.queue.get(id)!.pool, 'REJECTME');
  const refused = await sendRaw(node.ports.smtpPort, 'a@shop.example', 'r@dest.example', 'Subject: x\r\nX-Postern-Pool: nosuch\r\n\r\nhi');
  assert.equal(refused.code, 554, refused.text);
});

test('HTTP: "pool" is stored, shown by the API and `postern queue show`; a pool the node does not have is 422', async (t) => {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', POSTERN_SHAPING: shapingFile(t, FILE) });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const post = async (json: unknown): Promise<{ status: number; json: any }> => {
    const res = await fetch(`${base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) });
    return { status: res.status, json: await res.json() };
  };
  const raw = { from: 'a@shop.example', to: ['r@dest.example'], raw: 'Subject: x\r\n\r\nhi\r\n' };
  const bad = await post({ ...raw, pool: 'nosuch' });
  assert.equal(bad.status, 422);
  assert.equal(bad.json.error.code, 'PST_HTTP_UNKNOWN_POOL');
  assert.match(bad.json.error.message, /pool: "nosuch" is not a pool/);
  const badStructured = await post({ from: 'a@shop.example', to: ['r@dest.example'], subject: 's', text: 't', pool: 'nosuch' });
  assert.equal(badStructured.status, 422);
  assert.equal((await post({ ...raw, pool: 7 })).status, 400, 'not a string');
  assert.equal((await post({ from: 'a@shop.example', to: ['r@dest.example'], subject: 's', text: 't', headers: { 'X-Postern-Pool': 'bulk' } })).status, 400, 'not through headers');
  assert.equal(node.queue.counts().total, 0);

  const good = await post({ ...raw, pool: 'bulk' });
  assert.equal(good.status, 202, JSON.stringify(good.json));
  const structured = await post({ from: 'a@shop.example', to: ['r@dest.example'], subject: 's', text: 't', pool: 'main' });
  assert.equal(structured.status, 202, JSON.stringify(structured.json));
  const header = await post({ ...raw, raw: 'Subject: h\r\nX-Postern-Pool: bulk\r\n\r\nhi\r\n' });
  assert.equal(header.status, 202, JSON.stringify(header.json));
  const clash = await post({ ...raw, raw: 'Subject: h\r\nX-Postern-Pool: bulk\r\n\r\nhi\r\n', pool: 'main' });
  assert.equal(clash.status, 400);
  assert.equal(node.queue.get(good.json.id)!.pool, 'bulk');
  assert.equal(node.queue.get(structured.json.id)!.pool, 'main');
  assert.equal(node.queue.get(header.json.id)!.pool, 'bulk', 'a raw message\'s header names the pool when the field does not');
  assert.doesNotMatch(node.queue.withBody(header.json.id, (b) => Buffer.from(b)).toString('latin1'), /X-Postern-Pool/i);
  const view = (await (await fetch(`${base}/v1/queue/messages/${good.json.id}`)).json()) as { pool: string | null };
  assert.equal(view.pool, 'bulk');
  const show = await runCli(['queue', 'show', good.json.id], { POSTERN_DATA_DIR: node.config.dataDir, POSTERN_QUEUE_MAP_BYTES: '64M' });
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /^pool:\s+bulk \(named by the client\)$/m);
});

test('warm-up counts survive a restart: the day\'s budget spent before it still holds after it', async (t) => {
  const srv = await startScriptedServer(t);
  const file = shapingFile(t, `[source.ip2]
address = "127.0.0.2"
ehlo = "mta2.test.example"
warmup_start = ${TODAY}
warmup_first = 1

[pool.main]
sources = { ip2 = 1 }
default = true
`);
  const dataDir = join(tmpdir(t), 'queue');
  const env = { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `dest.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: file, POSTERN_DATA_DIR: dataDir };
  const first = await startTestNode(t, env, { delivery: { pollIntervalMs: 50 } });
  await sendMessage(first.ports.smtpPort, 'a@shop.example', ['r1@dest.example'], 'Subject: one\r\n\r\nhello\r\n');
  await waitFor('the first delivered', () => srv.messages().length === 1 && first.queue.counts().total === 0, 15_000);
  assert.equal(addr(srv.sessions[0]!.remoteAddress), '127.0.0.2');
  await first.close();

  const second = await startTestNode(t, env, { delivery: { pollIntervalMs: 50 } });
  const id = await sendMessage(second.ports.smtpPort, 'a@shop.example', ['r2@dest.example'], 'Subject: two\r\n\r\nhello\r\n');
  await waitFor('the second deferred for the warm-up', () => /warming up/.test(second.queue.get(id)?.recipients[0]!.lastReply?.text ?? ''), 15_000);
  const m = second.queue.get(id)!;
  assert.ok(m.nextAttemptAt >= Date.parse(`${TODAY}T00:00:00Z`) + 86_400_000, 'due tomorrow (UTC)');
  assert.equal(srv.messages().length, 1, 'not sent: the budget of 1 was spent before the restart');
  const show = await runCli(['queue', 'show', id], { POSTERN_DATA_DIR: dataDir, POSTERN_QUEUE_MAP_BYTES: '64M' });
  assert.match(show.stdout, /^  r2@dest\.example: pending, 0 attempts, source ip2$/m);
});

test('spill: past one source\'s warm-up budget the pool sends from its other source; the receiver sees the other address', async (t) => {
  const srv = await startScriptedServer(t);
  const file = shapingFile(t, `${SOURCES.replace('ehlo = "mta2.test.example"', `ehlo = "mta2.test.example"\nwarmup_start = ${TODAY}\nwarmup_first = 1`)}
[pool.main]
sources = { ip2 = 1000, ip3 = 1 }
default = true
warmup_overflow = "spill"
`);
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `dest.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: file }, { delivery: { pollIntervalMs: 50 } });
  // Weights 1000:1: (nearly) every message's own source is ip2, whose budget today is 1.
  for (let i = 0; i < 4; i++) await sendMessage(node.ports.smtpPort, 'a@shop.example', [`r${i}@dest.example`], `Subject: m${i}\r\n\r\nhello\r\n`);
  await waitFor('all four delivered', () => srv.messages().length === 4 && node.queue.counts().total === 0, 20_000);
  const by = { '127.0.0.2': 0, '127.0.0.3': 0 } as Record<string, number>;
  for (const m of delivered(srv).values()) by[m.address]!++;
  assert.deepEqual(by, { '127.0.0.2': 1, '127.0.0.3': 3 }, 'one from ip2 (its budget), the rest spilled to ip3');
});
