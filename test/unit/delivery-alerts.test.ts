// The alert engine on an injected clock: a deferral rate over the threshold raises an alert per
// destination and overall, it clears with hysteresis when the rate falls, a baseline raises the
// bar for a destination that always defers some, suspensions clear at their end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertEngine, MAX_ALERT_SCOPES, type Alert } from '../../src/delivery/alerts.js';

function engine(): { e: AlertEngine; raised: Alert[]; cleared: Alert[] } {
  const raised: Alert[] = [];
  const cleared: Alert[] = [];
  const e = new AlertEngine({ thresholds: { windowMs: 10_000, minSamples: 10, deferralRate: 0.2, bounceRate: 0.1 }, onRaise: (a) => raised.push(a), onClear: (a) => cleared.push(a) });
  return { e, raised, cleared };
}

/** The ids of the alerts up, sorted. */
function ids(e: AlertEngine): string[] {
  return e.active.map((a) => a.id).sort();
}

/** `n` outcomes to `dest` over one second from `t`, `bad` of them of `kind`. */
function feed(e: AlertEngine, dest: string, t: number, n: number, bad: number, kind: 'deferred' | 'bounced' = 'deferred'): void {
  for (let i = 0; i < n; i++) e.outcome(dest, i < bad ? kind : 'delivered', t + Math.floor((i * 1000) / n));
}

test('half the mail deferred raises deferral-rate for the destination and overall; healthy again, it clears', () => {
  const { e, raised, cleared } = engine();
  let t = 1_000_000;
  for (let s = 0; s < 10; s++, t += 1000) { feed(e, 'a.example', t, 10, 0); e.evaluate(t + 999); }
  assert.deepEqual(ids(e), [], 'healthy: nothing');
  for (let s = 0; s < 5; s++, t += 1000) { feed(e, 'a.example', t, 10, 5); e.evaluate(t + 999); }
  assert.deepEqual(ids(e), ['deferral-rate:destination:a.example', 'deferral-rate:overall']);
  const a = e.active.find((x) => x.scope === 'destination:a.example')!;
  assert.deepEqual([a.rule, a.threshold], ['deferral-rate', 0.2]);
  assert.ok(a.value > 0.2 && a.value <= 0.5, `value ${a.value}`);
  assert.equal(raised.length, 2);
  // Deferrals stop: the rate decays through the window; it clears only at or below 0.1.
  let clearedAt = 0;
  for (let s = 0; s < 15 && clearedAt === 0; s++, t += 1000) {
    feed(e, 'a.example', t, 10, 0);
    e.evaluate(t + 999);
    if (e.active.length === 0) clearedAt = t + 999;
    else assert.ok(e.active[0]!.value > 0.1, 'still up only while above the clear level');
  }
  assert.ok(clearedAt > 0, 'cleared within the window');
  assert.equal(cleared.length, 2);
  assert.equal(e.raised, 2);
  assert.equal(e.cleared, 2);
});

test('fewer outcomes than minSamples raise nothing', () => {
  const { e } = engine();
  const t = 5_000_000;
  feed(e, 'b.example', t, 5, 5);
  e.evaluate(t + 999);
  assert.deepEqual(ids(e), []);
});

test('bounce rate is its own rule', () => {
  const { e } = engine();
  const t = 5_000_000;
  feed(e, 'c.example', t, 20, 4, 'bounced');
  e.evaluate(t + 999);
  assert.deepEqual(e.active.map((a) => a.id).sort(), ['bounce-rate:destination:c.example', 'bounce-rate:overall']);
});

test('a destination that always defers 15% has a baseline: 30% is not an anomaly there, 60% is', () => {
  const { e } = engine();
  let t = 9_000_000;
  // Fixed threshold 0.2; a 15% baseline × 3 = 0.45 becomes the bar.
  for (let s = 0; s < 30; s++, t += 1000) { feed(e, 'd.example', t, 20, 3); e.evaluate(t + 999); }
  for (let s = 0; s < 10; s++, t += 1000) { feed(e, 'd.example', t, 20, 6); e.evaluate(t + 999); }
  assert.equal(e.active.find((a) => a.scope === 'destination:d.example'), undefined, '30% is under 3 × 15%');
  for (let s = 0; s < 10; s++, t += 1000) { feed(e, 'd.example', t, 20, 12); e.evaluate(t + 999); }
  const a = e.active.find((x) => x.scope === 'destination:d.example');
  assert.ok(a, '60% raises');
  assert.ok(a.threshold > 0.4 && a.threshold < 0.5, `threshold ${a.threshold}`);
});

test('a suspension is an alert until its end', () => {
  const { e, cleared } = engine();
  e.suspended('gmail', '192.0.2.1', 2000, 1000);
  assert.deepEqual(e.active.map((a) => [a.id, a.value]), [['suspended:site:gmail/source:192.0.2.1', 2000]]);
  e.evaluate(1999);
  assert.equal(e.active.length, 1);
  e.evaluate(2000);
  assert.equal(e.active.length, 0);
  assert.equal(cleared.length, 1);
});

test('a window with no traffic clears the alert and forgets the destination', () => {
  const { e } = engine();
  const t = 3_000_000;
  feed(e, 'e.example', t, 20, 20);
  e.evaluate(t + 999);
  assert.equal(e.active.length, 2);
  e.evaluate(t + 30_000);
  assert.deepEqual(ids(e), []);
});

test('outcomes count per site and per source too: each scope is alerted on by its own window', () => {
  const { e } = engine();
  const t = 6_000_000;
  // Two sources to one site: only ip3's mail is deferred; the site's rate is half of it.
  for (let i = 0; i < 20; i++) e.outcome('mx.a~ip2', 'delivered', t + i * 10, { site: 'google', source: 'ip2' });
  for (let i = 0; i < 20; i++) e.outcome('mx.a~ip3', i % 2 === 0 ? 'deferred' : 'delivered', t + i * 10, { site: 'google', source: 'ip3' });
  e.evaluate(t + 999);
  assert.deepEqual(ids(e), ['deferral-rate:destination:mx.a~ip3', 'deferral-rate:overall', 'deferral-rate:site:google', 'deferral-rate:source:ip3']);
  assert.equal(e.active.find((a) => a.scope === 'site:google')!.value, 0.25);
  assert.equal(e.active.find((a) => a.scope === 'source:ip3')!.value, 0.5);
});

test('scopes are bounded: past the cap the least recently counted idle scope is evicted, one with an alert never', () => {
  const { e } = engine();
  const t = 7_000_000;
  // One destination in trouble first, then a flood of new destinations (a hostile recipient set).
  for (let i = 0; i < 20; i++) e.outcome('sick.example', 'deferred', t);
  e.evaluate(t + 1);
  assert.ok(ids(e).includes('deferral-rate:destination:sick.example'));
  for (let i = 0; i < MAX_ALERT_SCOPES * 3; i++) e.outcome(`d${i}.example`, 'delivered', t + 2 + Math.floor(i / 100), { site: 'google', source: 'ip2' });
  assert.equal(e.scopes, MAX_ALERT_SCOPES + 3, 'destinations at the cap, plus site, source and overall');
  // The newest destination is tracked (the oldest idle ones went), and the alerted one stayed.
  for (let i = 0; i < 20; i++) e.outcome(`d${MAX_ALERT_SCOPES * 3 - 1}.example`, 'deferred', t + 100);
  e.evaluate(t + 101);
  assert.ok(ids(e).includes(`deferral-rate:destination:d${MAX_ALERT_SCOPES * 3 - 1}.example`), ids(e).join(' '));
  assert.ok(ids(e).includes('deferral-rate:destination:sick.example'));
});

test('tls-failures: a count in the window per destination and site; clears when it falls to half', () => {
  const { e } = engine();
  e.setThresholds({ ...e.thresholds, tlsFailures: 4 }, 0);
  let t = 8_000_000;
  for (let i = 0; i < 3; i++) e.outcome('mx.b', 'deferred', t, { site: 'yahoo', source: 'default', tls: true });
  e.evaluate(t);
  assert.deepEqual(ids(e).filter((id) => id.startsWith('tls')), [], 'three is under four');
  e.outcome('mx.b', 'deferred', t, { site: 'yahoo', source: 'default', tls: true });
  e.outcome('mx.b', 'delivered', t, { site: 'yahoo', tls: true }); // a delivery is never a TLS failure
  e.evaluate(t);
  assert.deepEqual(ids(e).filter((id) => id.startsWith('tls')), ['tls-failures:destination:mx.b', 'tls-failures:overall', 'tls-failures:site:yahoo']);
  assert.equal(e.active.find((a) => a.id === 'tls-failures:site:yahoo')!.value, 4);
  t += 10_500; // the window (10 s) slides past them
  e.evaluate(t);
  assert.deepEqual(ids(e).filter((id) => id.startsWith('tls')), []);
});

test('queue-growth: a queue that rises steadily over the window raises; a single jump or a burst being drained does not; it clears when it stops growing', () => {
  const { e, raised } = engine();
  e.setThresholds({ ...e.thresholds, queueWindowMs: 10_000, queueGrowth: 100 }, 0);
  let t = 10_000_000;
  let n = 0;
  // One burst of 500 (a campaign injected at once) that then stays: a jump, not a steady rise.
  for (let s = 0; s < 30; s++, t += 500) { e.queue(s < 5 ? 0 : 500, null, t); e.evaluate(t); }
  assert.deepEqual(raised, [], 'a single jump is not steady growth');
  // Drained at 20 per 500 ms: never growth.
  n = 500;
  for (let s = 0; s < 30; s++, t += 500) { e.queue(n, null, t); e.evaluate(t); n = Math.max(0, n - 20); }
  assert.deepEqual(raised, [], 'a burst being drained is not growth');
  // Steady growth of 10 per 500 ms: 200 over the 10 s window.
  let raisedAt = 0;
  for (let s = 0; s < 30; s++, t += 500) {
    n += 10;
    e.queue(n, null, t);
    e.evaluate(t);
    if (raisedAt === 0 && ids(e).includes('queue-growth:queue')) raisedAt = t;
  }
  assert.ok(raisedAt > 0, 'raised');
  const a = e.active.find((x) => x.rule === 'queue-growth')!;
  assert.equal(a.threshold, 100);
  assert.ok(a.value >= 100, `value ${a.value}`);
  // Flat from here: the growth over the window falls to half within a window.
  for (let s = 0; s < 25; s++, t += 500) { e.queue(n, null, t); e.evaluate(t); }
  assert.deepEqual(ids(e), [], 'flat: cleared');
});

test('queue-age: the oldest queued message past the threshold raises, clears at half', () => {
  const { e, cleared } = engine();
  e.setThresholds({ ...e.thresholds, queueAgeMs: 60_000 }, 0);
  const t = 20_000_000;
  e.queue(5, t - 59_000, t);
  e.evaluate(t);
  assert.deepEqual(ids(e), []);
  e.evaluate(t + 1000);
  assert.deepEqual(ids(e), ['queue-age:queue']);
  e.queue(4, t - 20_000, t + 2000); // the oldest went; the next is 22 s old
  e.evaluate(t + 2000);
  assert.deepEqual(ids(e), []);
  assert.equal(cleared[0]!.rule, 'queue-age');
  e.queue(0, null, t + 3000);
  e.evaluate(t + 100_000);
  assert.deepEqual(ids(e), [], 'an empty queue has no age');
});

test('circuit-open: raised when a breaker opens, cleared when it closes', () => {
  const { e } = engine();
  e.circuit('smtp:mx.c:25', true, 1000);
  e.circuit('smtp:mx.c:25', true, 1500); // reopened after a failed probe: the same alert
  assert.deepEqual(e.active.map((a) => [a.id, a.since]), [['circuit-open:destination:smtp:mx.c:25', 1000]]);
  assert.equal(e.openCircuits, 1);
  e.evaluate(100_000);
  assert.equal(e.active.length, 1, 'up as long as it is open');
  e.circuit('smtp:mx.c:25', false, 100_001);
  assert.deepEqual(e.active, []);
  assert.equal(e.openCircuits, 0);
});

test('filter-utilization and filter-wait: raised when held for filterForMs, cleared when below it as long', () => {
  const { e } = engine();
  e.setThresholds({ ...e.thresholds, filterUtilization: 0.9, filterWaitMs: 2000, filterForMs: 3000 }, 0);
  let t = 30_000_000;
  for (let s = 0; s < 3; s++, t += 1000) e.filter({ utilization: 1, waitMs: 0 }, t);
  assert.deepEqual(ids(e), [], 'not yet for 3 s');
  e.filter({ utilization: 0.5, waitMs: 0 }, t); // a dip starts the count again
  t += 1000;
  for (let s = 0; s < 4; s++, t += 1000) e.filter({ utilization: 0.95, waitMs: 2500 }, t);
  assert.deepEqual(ids(e), ['filter-utilization:filter', 'filter-wait:filter']);
  for (let s = 0; s < 3; s++, t += 1000) e.filter({ utilization: 0.1, waitMs: 0 }, t);
  assert.equal(e.active.length, 2, 'still up: not below for 3 s yet');
  e.filter({ utilization: 0.1, waitMs: 0 }, t);
  assert.deepEqual(ids(e), []);
});

test('setThresholds: a new threshold applies at the next evaluation; a new window does not clear what is up', () => {
  const { e } = engine();
  const t = 40_000_000;
  feed(e, 'f.example', t, 20, 6); // 30 %
  e.evaluate(t + 999);
  assert.ok(ids(e).includes('deferral-rate:overall'));
  e.setThresholds({ ...e.thresholds, deferralRate: 0.5 }, t + 1000);
  feed(e, 'g.example', t + 1000, 20, 6);
  e.evaluate(t + 1999);
  assert.ok(!ids(e).includes('deferral-rate:destination:g.example'), '30 % is under the new 50 %');
  e.setThresholds({ ...e.thresholds, windowMs: 20_000 }, t + 2000);
  e.evaluate(t + 2001);
  assert.ok(ids(e).includes('deferral-rate:overall'), 'the windows start afresh without clearing');
  assert.equal(e.thresholds.windowMs, 20_000);
});

test('a node condition (redis-down) is one alert while it lasts, however often it is told, and clears when it ends', () => {
  const raised: string[] = [];
  const cleared: string[] = [];
  const e = new AlertEngine({ onRaise: (a) => raised.push(a.id), onClear: (a) => cleared.push(a.id) });
  e.condition('redis-down', 'cluster', true, 1000);
  e.condition('redis-down', 'cluster', true, 2000);
  e.evaluate(3000);
  assert.deepEqual(raised, ['redis-down:cluster']);
  assert.deepEqual(e.active.map((a) => [a.id, a.rule, a.since]), [['redis-down:cluster', 'redis-down', 1000]]);
  e.condition('redis-down', 'cluster', false, 4000);
  e.condition('redis-down', 'cluster', false, 5000);
  assert.deepEqual(cleared, ['redis-down:cluster']);
  assert.equal(e.active.length, 0);
  e.condition('redis-down', 'cluster', true, 6000);
  assert.deepEqual(raised, ['redis-down:cluster', 'redis-down:cluster'], 'the next outage is a new alert');
});

test('the monitor counts what the next hop answered, not deferrals made without sending (tried: false: shaper pacing, open circuit)', async () => {
  const { createAlertMonitor } = await import('../../src/delivery/alert-monitor.js');
  const { loadConfig } = await import('../../src/config/load.js');
  const { default: pino } = await import('pino');
  let clock = 50_000_000;
  const m = createAlertMonitor(loadConfig({ POSTERN_ALERT_WINDOW_MS: '10s', POSTERN_ALERT_MIN_RECIPIENTS: '10' }), pino({ level: 'silent' }), { now: () => clock });
  const ev = (type: 'delivered' | 'deferred', tried?: false) => ({ type, time: new Date(clock).toISOString(), id: 'x', recipient: 'r@d.example', destination: 'mx.d.example', ...(tried === false ? { tried } : {}) });
  for (let i = 0; i < 20; i++) m.observe(ev('delivered'));
  // The shaper paces a throttled site: many untried deferrals, no answer from the next hop.
  for (let i = 0; i < 40; i++) m.observe(ev('deferred', false));
  clock += 100;
  m.engine.evaluate(clock);
  assert.deepEqual(m.engine.active.map((a) => a.id), [], 'untried deferrals are not a deferral rate');
  for (let i = 0; i < 20; i++) m.observe(ev('deferred'));
  m.engine.evaluate(clock);
  assert.ok(m.engine.active.some((a) => a.id === 'deferral-rate:overall'), 'the next hop\'s own deferrals are');
});
