// Rates ("100/s") and the GCRA throttle: pinned parse errors, exact waits and bursts (the
// property that no window admits more than burst + rate × window is in test/property).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Throttle, ThrottleMap } from '../../src/delivery/throttle.js';
import { parseRate } from '../../src/lib/rate.js';
import { success, valueOf } from '../../src/lib/result.js';

test('parseRate: per-ms rates for s, m, h, d and multiples', () => {
  assert.deepEqual(parseRate('100/s'), success(0.1));
  assert.deepEqual(parseRate('6000/m'), success(0.1));
  assert.deepEqual(parseRate('10/h'), success(10 / 3_600_000));
  assert.deepEqual(parseRate('5/d'), success(5 / 86_400_000));
  assert.deepEqual(parseRate(' 50 / 5m '), success(50 / 300_000));
  assert.deepEqual(parseRate('1/Hour'), success(1 / 3_600_000));
});

test('parseRate: junk is an error naming the value and the allowed forms (pinned)', () => {
  for (const bad of ['', '100', '100/', '/s', '0/s', '-1/s', '10/y', '10/0m', '1e3/s', 'ten/s', '10/s/s']) {
    assert.deepEqual(parseRate(bad), { ok: false, error: `rate "${bad}" is not a count per period; expected like 100/s, 6000/m, 10/h, 5/d or 50/5m` }, bad);
  }
});

test('Throttle: burst 1 admits one event per interval and says how long to wait', () => {
  const t = new Throttle(valueOf(parseRate('10/s'))); // one per 100 ms
  assert.equal(t.take(1000), 0);
  assert.equal(t.take(1000), 100);
  assert.equal(t.take(1040), 60);
  assert.equal(t.take(1100), 0, 'waiting the answer is enough');
  assert.equal(t.take(1150), 50, 'a refused take did not push the schedule back');
  assert.equal(t.take(5000), 0, 'idle time does not bank credit beyond the burst');
  assert.equal(t.take(5000), 100);
});

test('Throttle: a burst is admitted at once, then the nominal rate', () => {
  const t = new Throttle(1 / 1000, 3); // one per second, burst 3
  assert.deepEqual([0, 0, 0, 0].map(() => t.take(0)), [0, 0, 0, 1000]);
  assert.equal(t.take(1000), 0);
  assert.equal(t.take(1000), 1000);
  assert.ok(!t.idle(3999) && t.idle(4000), 'back to full burst once the schedule has caught up');
  assert.throws(() => new Throttle(0), RangeError);
  assert.throws(() => new Throttle(1, 0), RangeError);
});

test('ThrottleMap: one throttle per key; idle ones are swept', () => {
  const m = new ThrottleMap(1 / 100);
  assert.equal(m.take('smtp:a:25', 0), 0);
  assert.equal(m.take('smtp:b:25', 0), 0, 'keys do not share a budget');
  assert.equal(m.take('smtp:a:25', 0), 100);
  assert.equal(m.size, 2);
  m.sweep(50);
  assert.equal(m.size, 2, 'not idle yet');
  m.sweep(100);
  assert.equal(m.size, 0);
  assert.equal(m.take('smtp:a:25', 100), 0);
  for (let i = 0; i < 1000; i++) m.take(`k${i}`, 1000 + i * 1000);
  assert.ok(m.size < 200, `swept automatically as it grows (size ${m.size})`);
  assert.throws(() => new ThrottleMap(-1), RangeError);
});
