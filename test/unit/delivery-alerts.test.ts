// The alert engine on an injected clock: a deferral rate over the threshold raises an alert per
// destination and overall, it clears with hysteresis when the rate falls, a baseline raises the
// bar for a destination that always defers some, suspensions clear at their end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertEngine, type Alert } from '../../src/delivery/alerts.js';

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
