// Adaptive back-off (delivery/shaping/): which replies are throttles, suspensions or
// blocklistings; the AIMD of one source × site (rate and window lowered multiplicatively,
// raised additively while mail waits); the shaper's site matching (recipient domain first,
// then the longest MX suffix), its per-site connection settings, its paced retries and its
// suspension alert.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyReply } from '../../src/delivery/shaping/reply-class.js';
import { SiteState, RATE_DECREASE, CONN_PROBE_MS, MIN_RETRY_MS, MAX_WAIT_MS, MAX_WAITERS } from '../../src/delivery/shaping/site-state.js';
import { Shaper, type ShapingAlert } from '../../src/delivery/shaping/shaper.js';
import { parseShaping, EMPTY_SHAPING, type ShapingFile } from '../../src/config/shaping.js';
import type { Destination, RecipientResult } from '../../src/delivery/types.js';
import type { ReplyRecord } from '../../src/queue/store.js';

const r = (code: number | undefined, enhanced: string | undefined, text: string, command = 'RCPT'): ReplyRecord => ({ text, transient: code === undefined || code < 500, command, ...(code !== undefined ? { code } : {}), ...(enhanced !== undefined ? { enhanced } : {}), destination: 'd' });

test('classifyReply: throttles by stage, greylisting and plain failures are not, patterns and blocklists', () => {
  assert.equal(classifyReply(r(421, '4.7.0', 'Too many connections, try again later', 'CONNECT')), 'throttle-connection');
  assert.equal(classifyReply(r(421, '4.7.0', 'Try again later, closing connection.', 'EHLO')), 'throttle-connection');
  assert.equal(classifyReply(r(451, '4.7.1', 'Rate limit exceeded, try again later', 'END-OF-DATA')), 'throttle-rate');
  assert.equal(classifyReply(r(450, '4.7.1', 'Throttled: too many messages', 'MAIL')), 'throttle-rate');
  assert.equal(classifyReply(r(451, '4.7.1', 'Greylisted, please try again later', 'RCPT')), 'other');
  assert.equal(classifyReply(r(451, '4.3.0', 'Mail server temporarily rejected message.', 'DATA')), 'other');
  assert.equal(classifyReply(r(421, '4.4.2', 'connection lost', 'CONNECT')), 'other');
  assert.equal(classifyReply(r(undefined, '4.4.1', 'connect ECONNREFUSED: too many connections', 'CONNECT')), 'other', 'our own failures are never throttles');
  assert.equal(classifyReply(r(550, '5.1.1', 'user unknown')), 'other');
  assert.equal(classifyReply(r(554, '5.7.1', 'Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org', 'RCPT')), 'blocklist');
  assert.equal(classifyReply(r(550, '5.7.1', 'Message rejected: listed at b.barracudacentral.org')), 'blocklist');
  assert.equal(classifyReply(r(550, '5.1.1', 'blocked using nothing: user unknown')), 'other', 'only a 5.7.x blocklist');
  const unusual = r(421, '4.7.0', 'Our system has detected an unusual rate of unsolicited mail originating from your IP address.', 'MAIL');
  assert.equal(classifyReply(unusual), 'other', 'unconfigured: an ordinary deferral');
  assert.equal(classifyReply(unusual, ['unusual rate of unsolicited mail']), 'suspend');
  assert.equal(classifyReply(r(250, undefined, 'ok')), 'other');
});

test('SiteState: a rate throttle lowers the rate below what the site accepted, once per hold; it recovers while mail waits', async () => {
  let skew = 0; // the clock runs (the pacer's timers fire) and the test jumps it ahead
  const now = () => Date.now() + skew;
  const fresh = new SiteState('default|y', { maxConnections: 5, rate: null, adaptive: true }, now);
  await Promise.all([fresh.admit(), fresh.admit(), fresh.admit(), fresh.admit()]);
  fresh.onRateThrottle(now());
  assert.ok(Math.abs(fresh.rate! - 0.004 * RATE_DECREASE) < 1e-9, 'nothing accepted yet: from what was sent (4 in the last second)');
  fresh.close();
  const s = new SiteState('default|x', { maxConnections: 5, rate: null, adaptive: true }, now);
  assert.equal(s.rate, null);
  const t = now();
  for (let i = 0; i < 50; i++) s.onSuccess(t - 500 + i * 10); // 50 accepted in the last second
  s.onRateThrottle(t);
  assert.ok(Math.abs(s.rate! - 0.05 * RATE_DECREASE) < 1e-9, `rate ${s.rate}`);
  s.onRateThrottle(t + 10);
  assert.ok(Math.abs(s.rate! - 0.05 * RATE_DECREASE) < 1e-9, 'the same burst is one signal');
  s.onRateThrottle(t + 1500);
  assert.ok(Math.abs(s.rate! - 0.05 * RATE_DECREASE ** 2) < 1e-9, 'another second of throttles lowers again, from the current rate');
  const lowered = s.rate!;
  skew += 3000;
  // Mail waiting for the pacer raises the rate, at most once a second, up to the ceiling.
  for (let i = 0; i < 4; i++) {
    const gates = await Promise.all([s.admit(), s.admit()]);
    assert.deepEqual(gates, ['go', 'go']);
    s.leave();
    s.leave();
    skew += 1100;
  }
  assert.ok(s.rate! > lowered, `raised from ${lowered} to ${s.rate}`);
  s.close();
});

test('SiteState: a refused connection lowers the window to what was open, never below 1, and probes one more later', async () => {
  let now = 0;
  const s = new SiteState('default|x', { maxConnections: 20, rate: null, adaptive: true }, () => now);
  for (let i = 0; i < 8; i++) assert.equal(await s.admit(), 'go');
  s.onConnectionThrottle(now); // 8 in flight, one refused: the window halves (10), and at most the 7 others
  assert.equal(s.window, 7);
  s.leave();
  s.onConnectionThrottle(now + 10);
  assert.equal(s.window, 6, 'within the hold no second halving, only the bound of what is open');
  s.onConnectionThrottle(now + 1500);
  assert.equal(s.window, 3, 'a later signal halves again');
  for (let i = 0; i < 7; i++) s.leave();
  assert.equal(s.inflight, 0);
  for (let i = 0; i < 3; i++) await s.admit();
  const waiting = s.admit(); // demand for a fourth slot
  await new Promise((res) => setImmediate(res));
  assert.equal(s.waiting, 1);
  now += CONN_PROBE_MS / 2;
  s.leave();
  assert.equal(await waiting, 'go', 'the freed slot');
  assert.equal(s.window, 3, 'too soon after the refusal to probe');
  const probe = s.admit();
  await new Promise((res) => setImmediate(res));
  now += CONN_PROBE_MS;
  s.leave(); // the probe interval has passed with mail waiting: one more
  assert.equal(await probe, 'go');
  assert.equal(s.window, 4);
  const s1 = new SiteState('k', { maxConnections: 2, rate: null, adaptive: true }, () => now);
  await s1.admit();
  s1.onConnectionThrottle(now);
  s1.onConnectionThrottle(now + 2000);
  assert.equal(s1.window, 1, 'never below one connection');
  const off = new SiteState('k', { maxConnections: 6, rate: 0.01, adaptive: false }, () => now);
  off.onConnectionThrottle(now);
  off.onRateThrottle(now);
  assert.deepEqual([off.window, off.rate], [6, 0.01], 'adaptive = false: the configured limits stand');
  s.close();
  s1.close();
});

test('SiteState: the rate is paced FIFO, and close() releases the waiters with false', async () => {
  const s = new SiteState('k', { maxConnections: Infinity, rate: 1 / 20, adaptive: true }); // one per 20 ms
  const t0 = performance.now();
  const gates = await Promise.all([s.admit(), s.admit(), s.admit(), s.admit(), s.admit()]);
  const took = performance.now() - t0;
  assert.deepEqual(gates, ['go', 'go', 'go', 'go', 'go']);
  assert.ok(took >= 75 && took < 1000, `5 at 50/s took ${took} ms`);
  const late = s.admit();
  const later = s.admit();
  s.close();
  assert.deepEqual(await Promise.all([late, later]), ['closed', 'closed']);
});

test('SiteState: a transaction that would wait too long, or behind too many, is busy (deferred untried), not queued', async () => {
  const slow = new SiteState('k', { maxConnections: 5, rate: 1 / 60_000, adaptive: true }); // one a minute
  assert.equal(await slow.admit(), 'go');
  assert.equal(await slow.admit(), 'busy', 'the next slot is a minute away: more than MAX_WAIT_MS');
  slow.leave();
  const narrow = new SiteState('k', { maxConnections: 1, rate: null, adaptive: true });
  assert.equal(await narrow.admit(), 'go');
  const queued = Array.from({ length: MAX_WAITERS }, () => narrow.admit());
  await new Promise((res) => setImmediate(res));
  assert.equal(await narrow.admit(), 'busy', 'MAX_WAITERS already wait for a slot');
  narrow.close();
  assert.ok((await Promise.all(queued)).every((x) => x === 'closed'));
  slow.close();
  assert.ok(MAX_WAIT_MS <= 60_000, 'far below the queue lease (5 min by default)');
});

test('SiteState.retrySlot: deferred mail comes back paced at the current rate, within bounds', () => {
  const s = new SiteState('k', { maxConnections: 5, rate: 0.01, adaptive: true }, () => 0); // 10/s
  const slots = [0, 1, 2, 3].map(() => s.retrySlot(0, () => 0));
  assert.deepEqual(slots, [MIN_RETRY_MS, MIN_RETRY_MS + 100, MIN_RETRY_MS + 200, MIN_RETRY_MS + 300]);
});

const FILE = `
[site.google]
domains = ["gmail.com", "*.corp.example"]
mx = ["google.com"]
max_connections = 2
messages_per_connection = 7
recipients_per_transaction = 3
rate = "10/s"
tls = "required"
pipelining = false
retry = "30s"
suspend_on = ["unusual rate of unsolicited mail"]
suspend_for = "10m"

[site.google.source.default]
max_connections = 1

[site.deep]
mx = ["l.google.com"]
`;

function file(text: string): ShapingFile {
  const f = parseShaping(text, 'f.toml');
  if (!f.ok) assert.fail(f.error.join('; '));
  return f.value;
}

const smtp = (hosts: string[], key = `smtp:${hosts.join(',')}`): Extract<Destination, { kind: 'smtp' }> => ({ kind: 'smtp', key, hosts: hosts.map((host) => ({ host, port: 25 })), tlsPolicy: 'opportunistic' });

test('Shaper: domain rules first, then the longest MX suffix on a label boundary; unmatched destinations are their own site', () => {
  const sh = new Shaper({ file: file(FILE), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null } });
  const hosts = (h: string[]) => h.map((host) => ({ host }));
  assert.equal(sh.siteFor('gmail.com', hosts(['mx.other.example']))?.name, 'google');
  assert.equal(sh.siteFor('a.b.corp.example', [])?.name, 'google');
  assert.equal(sh.siteFor('corp.example', []), null, '*.x does not match x');
  assert.equal(sh.siteFor('customer.example', hosts(['aspmx.l.google.com']))?.name, 'deep', 'longest suffix');
  assert.equal(sh.siteFor('customer.example', hosts(['alt1.aspmx.google.com.']))?.name, 'google');
  assert.equal(sh.siteFor('customer.example', hosts(['notgoogle.com'])), null, 'a label boundary');
  assert.equal(sh.siteFor('customer.example', hosts(['mx.example', 'google.com']))?.name, 'google', 'any MX host');
  const d = sh.route('gmail.com', smtp(['mx.example']), 'opportunistic');
  assert.ok(d.kind === 'smtp');
  assert.equal(d.key, 'smtp:mx.example:25/tls=required@google');
  assert.equal(d.tlsPolicy, 'required');
  assert.deepEqual(d.shape, { site: 'google', source: 'default', maxConnections: 1, maxMessagesPerConnection: 7, pipelining: false });
  const plain = sh.route('else.example', smtp(['mx.else.example']), 'opportunistic');
  assert.ok(plain.kind === 'smtp');
  assert.equal(plain.key, 'smtp:mx.else.example:25');
  assert.deepEqual(plain.shape, { site: '', source: 'default', maxConnections: 20, maxMessagesPerConnection: 1000 });
  const routeTls = sh.route('gmail.com', { ...smtp(['mx.example']), tlsPolicy: 'none' }, 'opportunistic');
  assert.ok(routeTls.kind === 'smtp' && routeTls.tlsPolicy === 'none', "a route's own TLS policy wins");
  const md: Destination = { kind: 'maildir', key: 'maildir:/x', root: '/x' };
  assert.equal(sh.route('gmail.com', md, 'opportunistic'), md);
});

const fail = (reply: ReplyRecord): RecipientResult => (reply.transient === false ? { kind: 'failed', address: 'a@gmail.com', reply } : { kind: 'deferred', address: 'a@gmail.com', reply });

test('Shaper: one source × site for every destination of a site, its limits, and throttles that never count as failures', async () => {
  const sh = new Shaper({ file: file(FILE), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null } });
  const d1 = sh.route('gmail.com', smtp(['mx1.example']), 'opportunistic') as Destination;
  const d2 = sh.route('x.corp.example', smtp(['mx2.example']), 'opportunistic') as Destination;
  const a = await sh.admit(d1);
  assert.ok(a.ok);
  assert.equal(a.value.maxRecipients, 3);
  let second = false;
  const b = sh.admit(d2).then((x) => ((second = true), x));
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(second, false, 'the source "default" has max_connections = 1 at google, shared by both destinations');
  assert.equal(sh.states.size, 1);
  assert.deepEqual([...sh.states.keys()], ['default|google']);
  const throttle = r(421, '4.7.0', 'Too many connections', 'CONNECT');
  throttle.destination = d1.key;
  assert.equal(a.value.done([fail(throttle)]), true, 'all failures were throttles: not a breaker failure');
  const bb = await b;
  assert.ok(bb.ok);
  const other = r(451, '4.3.0', 'temporary failure');
  assert.equal(bb.value.done([fail(other)]), false);
  // Paced retry for the throttle, the site's retry schedule for the rest.
  const now = Date.now();
  const due = sh.retryAt(throttle, 1, true, now)!;
  assert.ok(due >= now + MIN_RETRY_MS && due <= now + 3 * MIN_RETRY_MS, `throttled: back in seconds (${due - now} ms)`);
  other.destination = d2.key;
  const sched = sh.retryAt(other, 1, true, now)!;
  assert.ok(sched >= now + 27_000 && sched <= now + 33_000, `the site's retry = "30s" (${sched - now} ms)`);
  assert.equal(sh.retryAt({ ...other, destination: 'smtp:unknown' }, 1, true, now), null, 'unknown: the default schedule');
  sh.close();
});

test('Shaper: a suspend_on pattern or a blocklist suspends the source × site once, alerts, and defers untried until it ends', async () => {
  const alerts: ShapingAlert[] = [];
  let now = 1_000_000;
  const sh = new Shaper({ file: file(FILE), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null }, onAlert: (x) => alerts.push(x), now: () => now, random: () => 0 });
  const d = sh.route('gmail.com', smtp(['mx1.example']), 'opportunistic') as Destination;
  const a = await sh.admit(d);
  assert.ok(a.ok);
  const unusual = r(421, '4.7.0', 'Our system has detected an unusual rate of unsolicited mail originating from your IP address.', 'MAIL');
  unusual.destination = d.key;
  assert.equal(a.value.done([fail(unusual), fail(unusual)]), true);
  assert.equal(alerts.length, 1);
  assert.deepEqual({ ...alerts[0], reply: undefined }, { type: 'shaping.suspended', source: 'default', site: 'google', reason: 'pattern', until: now + 600_000, reply: undefined });
  assert.equal(sh.retryAt(unusual, 1, true, now), now + 600_000, 'the suspended come back when it ends');
  now += 1000;
  const refused = await sh.admit(d);
  assert.ok(!refused.ok);
  assert.match(refused.error.text, /source default is suspended at google until/);
  assert.equal(sh.retryAt(refused.error, 1, false, now), now - 1000 + 600_000);
  now += 600_000;
  const back = await sh.admit(d);
  assert.ok(back.ok, 'admitted again once the suspension ends');
  const listed = r(554, '5.7.1', 'Client host [192.0.2.1] blocked using zen.spamhaus.org', 'RCPT');
  listed.destination = d.key;
  back.value.done([fail(listed)]);
  assert.equal(alerts.length, 2);
  assert.equal(alerts[1]!.reason, 'blocklist');
  assert.equal(alerts[1]!.until, now + 4 * 3_600_000);
  sh.close();
});

test('Shaper: POSTERN_DEST_RATE and POSTERN_DEST_MAX_CONNECTIONS are the defaults; maildir and webhook get the rate only', async () => {
  const sh = new Shaper({ file: EMPTY_SHAPING, defaults: { maxConnections: 1, messagesPerConnection: 10, rate: null } });
  const d = smtp(['mx.example']);
  const a = await sh.admit(d);
  let second = false;
  void sh.admit(d).then(() => (second = true));
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(second, false);
  const md: Destination = { kind: 'maildir', key: 'maildir:/x', root: '/x' };
  const m = await Promise.all([sh.admit(md), sh.admit(md), sh.admit(md)]);
  assert.ok(m.every((x) => x.ok), 'no connection limit for maildir');
  assert.ok(a.ok);
  a.value.done([]);
  sh.close();
});

test('Shaper: a new file applies to new transactions; close() defers the waiting ones untried, due at once', async () => {
  const sh = new Shaper({ file: EMPTY_SHAPING, defaults: { maxConnections: 1, messagesPerConnection: 10, rate: null } });
  assert.equal(sh.siteFor('gmail.com', []), null);
  sh.setFile(file(FILE));
  assert.equal(sh.siteFor('gmail.com', [])?.name, 'google');
  const d = smtp(['mx.example']);
  const a = await sh.admit(d);
  const waiting = sh.admit(d);
  sh.close();
  const w = await waiting;
  assert.ok(!w.ok);
  assert.equal(w.error.enhanced, '4.3.2');
  const now = Date.now();
  const due = sh.retryAt(w.error, 1, false, now)!;
  assert.ok(due >= now && due <= now + 1000);
  assert.ok(a.ok);
});

test('Shaper: a destination that logs in (/auth=) keeps its TLS policy whatever its site says, and its key names the credentials', () => {
  const sh = new Shaper({ file: file(FILE.replace(/tls = "required"/, 'tls = "none"')), defaults: { maxConnections: 20, messagesPerConnection: 1000, rate: null } });
  const d = sh.route('gmail.com', { ...smtp(['mx.example']), tlsPolicy: 'required', auth: '/etc/a' }, 'required');
  assert.ok(d.kind === 'smtp');
  assert.equal(d.tlsPolicy, 'required');
  assert.equal(d.key, 'smtp:mx.example:25/tls=required/auth=/etc/a@google');
  const plain = sh.route('gmail.com', { ...smtp(['mx.example']), tlsPolicy: 'required' }, 'required');
  assert.equal(plain.kind === 'smtp' && plain.tlsPolicy, 'none', 'without /auth= the site still decides');
});
