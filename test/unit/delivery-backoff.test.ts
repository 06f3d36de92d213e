// Retry schedules, durations, jitter and message lifetime; pinned parse errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration } from '../../src/lib/duration.js';
import { success, valueOf } from '../../src/lib/result.js';
import {
  parseRetrySchedule,
  nextRetryAt,
  expired,
  DEFAULT_RETRY_SCHEDULE_MS,
  DEFAULT_MAX_LIFETIME_MS,
} from '../../src/delivery/backoff.js';

const MIN = 60_000;

test('parseDuration: units, compounds, fractions', () => {
  assert.deepEqual(parseDuration('5d'), success(5 * 86_400_000));
  assert.deepEqual(parseDuration('90s'), success(90_000));
  assert.deepEqual(parseDuration('1h30m'), success(90 * MIN));
  assert.deepEqual(parseDuration('1.5h'), success(90 * MIN));
  assert.deepEqual(parseDuration('250ms'), success(250));
  assert.deepEqual(parseDuration(' 2W '), success(14 * 86_400_000));
  assert.deepEqual(parseDuration('1m5s'), success(65_000));
});

test('parseDuration: a bare number or junk is an error (pinned)', () => {
  for (const bad of ['', '5', 'm', '5 m', '5y', '-5m', '5m-', '1h 30m', 'soon']) {
    assert.deepEqual(parseDuration(bad), { ok: false, error: `duration "${bad}" is not a number with a unit; expected like 90s, 5m, 1h30m or 5d (units ms, s, m, h, d, w)` }, bad);
  }
});

test('parseRetrySchedule: the default is Postfix-like, and errors list every bad delay', () => {
  assert.deepEqual(DEFAULT_RETRY_SCHEDULE_MS, [5 * MIN, 10 * MIN, 20 * MIN, 40 * MIN, 60 * MIN]);
  assert.equal(DEFAULT_MAX_LIFETIME_MS, 5 * 86_400_000);
  assert.deepEqual(parseRetrySchedule(' 1m, 2m ,1h'), success([MIN, 2 * MIN, 60 * MIN]));
  assert.ok(Object.isFrozen(valueOf(parseRetrySchedule('1m'))));
  assert.deepEqual(parseRetrySchedule('5m,ten,0s,1h,'), {
    ok: false,
    error: 'retry schedule "5m,ten,0s,1h," has bad delays ("ten", "0s", ""); expected comma-separated durations > 0 like 5m,10m,20m,40m,1h',
  });
});

test('nextRetryAt: walks the schedule, then repeats its last delay', () => {
  const mid = (): number => 0.5; // no jitter
  const s = valueOf(parseRetrySchedule('5m,10m,1h'));
  assert.deepEqual([0, 1, 2, 3, 4, 50].map((a) => nextRetryAt(a, 1000, s, mid) - 1000), [5 * MIN, 5 * MIN, 10 * MIN, 60 * MIN, 60 * MIN, 60 * MIN]);
});

test('nextRetryAt: jitter stays within ±10% and is actually applied', () => {
  assert.equal(nextRetryAt(1, 0, DEFAULT_RETRY_SCHEDULE_MS, () => 0), 270_000);
  assert.equal(nextRetryAt(1, 0, DEFAULT_RETRY_SCHEDULE_MS, () => 1), 330_000);
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const d = nextRetryAt(2, 0);
    assert.ok(d >= 540_000 && d <= 660_000, String(d));
    seen.add(d);
  }
  assert.ok(seen.size > 100, 'default randomness spreads retries');
});

test('expired: at or past the lifetime', () => {
  assert.equal(expired(0, 5 * 86_400_000 - 1), false);
  assert.equal(expired(0, 5 * 86_400_000), true);
  assert.equal(expired(1000, 2000, 1000), true);
  assert.equal(expired(1000, 1999, 1000), false);
});
