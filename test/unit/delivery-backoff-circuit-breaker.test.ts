// The per-destination circuit breaker: opens after N consecutive failures, doubles its open
// interval on each failed probe up to the cap (jittered), lets exactly one probe through when
// half-open, and closes on success.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CircuitBreaker, CircuitBreakerMap } from '../../src/delivery/circuit-breaker.js';

const S = 1000;

test('opens after threshold consecutive failures; a success in between resets the count', () => {
  const b = new CircuitBreaker({ threshold: 3, jitter: 0 });
  b.recordFailure(0);
  b.recordFailure(0);
  b.recordSuccess();
  b.recordFailure(0);
  b.recordFailure(0);
  assert.equal(b.state(0), 'closed');
  assert.equal(b.canAttempt(0), true);
  b.recordFailure(0);
  assert.equal(b.state(0), 'open');
  assert.equal(b.canAttempt(29 * S), false);
  assert.equal(b.retryAt(), 30 * S);
});

test('half-open lets one probe through; a failed probe doubles the interval up to the cap', () => {
  const b = new CircuitBreaker({ threshold: 1, jitter: 0, baseOpenMs: 30 * S, maxOpenMs: 100 * S });
  b.recordFailure(0);
  const intervals: number[] = [];
  let now = 0;
  for (let i = 0; i < 4; i++) {
    intervals.push(b.retryAt() - now);
    now = b.retryAt();
    assert.equal(b.state(now), 'half-open');
    assert.equal(b.canAttempt(now), true, 'the probe');
    assert.equal(b.canAttempt(now), false, 'only one probe');
    b.recordFailure(now);
  }
  assert.deepEqual(intervals, [30 * S, 60 * S, 100 * S, 100 * S]);
  now = b.retryAt();
  assert.equal(b.canAttempt(now), true);
  b.recordSuccess();
  assert.equal(b.state(now), 'closed');
  assert.equal(b.canAttempt(now), true);
  assert.equal(b.canAttempt(now), true, 'closed admits everything');
  b.recordFailure(now);
  assert.equal(b.retryAt() - now, 30 * S, 'after closing, the interval starts over');
});

test('failures reported while open (attempts already in flight) do not extend it', () => {
  const b = new CircuitBreaker({ threshold: 1, jitter: 0 });
  b.recordFailure(0);
  b.recordFailure(10 * S);
  b.recordFailure(20 * S);
  assert.equal(b.retryAt(), 30 * S);
});

test('a lost probe is presumed failed-to-report after probeTimeoutMs', () => {
  const b = new CircuitBreaker({ threshold: 1, jitter: 0, probeTimeoutMs: 10 * S });
  b.recordFailure(0);
  assert.equal(b.canAttempt(30 * S), true);
  assert.equal(b.canAttempt(39 * S), false);
  assert.equal(b.canAttempt(40 * S), true);
});

test('open intervals are jittered by ±jitter', () => {
  const at = (r: number): number => {
    const b = new CircuitBreaker({ threshold: 1, jitter: 0.1, random: () => r });
    b.recordFailure(0);
    return b.retryAt();
  };
  assert.equal(at(0), 27 * S);
  assert.equal(at(1), 33 * S);
  assert.equal(at(0.5), 30 * S);
});

test('options are validated', () => {
  assert.throws(() => new CircuitBreaker({ threshold: 0 }), RangeError);
  assert.throws(() => new CircuitBreaker({ baseOpenMs: 10, maxOpenMs: 5 }), RangeError);
  assert.throws(() => new CircuitBreakerMap({ jitter: 1 }), RangeError);
});

test('CircuitBreakerMap: per key, and healthy keys are not kept', () => {
  const m = new CircuitBreakerMap({ threshold: 2, jitter: 0 });
  m.recordFailure('smtp:a:25', 0);
  m.recordFailure('smtp:a:25', 0);
  m.recordFailure('smtp:b:25', 0);
  assert.equal(m.canAttempt('smtp:a:25', 1), false);
  assert.equal(m.canAttempt('smtp:b:25', 1), true);
  assert.equal(m.canAttempt('smtp:never:25', 1), true);
  assert.equal(m.state('smtp:a:25', 1), 'open');
  assert.equal(m.retryAt('smtp:a:25'), 30 * S);
  assert.equal(m.retryAt('smtp:b:25'), 0);
  assert.equal(m.size, 2);
  m.recordSuccess('smtp:a:25');
  m.recordSuccess('smtp:b:25');
  assert.equal(m.size, 0);
  assert.equal(m.state('smtp:a:25', 1), 'closed');
});

test('map: the change hook hears a circuit open once (a failed probe reopening it is no change) and close once; openCount follows', () => {
  const changes: Array<[string, boolean, number]> = [];
  const m = new CircuitBreakerMap({ threshold: 2, jitter: 0, baseOpenMs: 10 * S }, (key, open, now) => changes.push([key, open, now]));
  m.recordFailure('smtp:a:25', 0);
  assert.deepEqual(changes, [], 'one failure of two');
  m.recordFailure('smtp:a:25', 1);
  assert.deepEqual(changes, [['smtp:a:25', true, 1]]);
  assert.equal(m.openCount, 1);
  assert.equal(m.canAttempt('smtp:a:25', 10 * S + 1), true, 'half-open: the probe');
  m.recordFailure('smtp:a:25', 10 * S + 2); // the probe failed: open again, longer
  assert.equal(changes.length, 1, 'still the same episode');
  m.recordSuccess('smtp:b:25', 10 * S + 3); // never failed: nothing to close
  m.recordSuccess('smtp:a:25', 40 * S);
  assert.deepEqual(changes[1], ['smtp:a:25', false, 40 * S]);
  assert.equal(m.openCount, 0);
  m.recordFailure('smtp:c:25', 50 * S);
  m.recordSuccess('smtp:c:25', 50 * S); // one failure, circuit still closed: no change to report
  assert.equal(changes.length, 2);
});

test('map: breakers of destinations never heard of again are swept, so failing destinations cannot grow it without bound', () => {
  const changes: Array<[string, boolean]> = [];
  const m = new CircuitBreakerMap({ threshold: 2, jitter: 0, baseOpenMs: 30 * S, maxOpenMs: 60 * S, probeTimeoutMs: 10 * S }, (k, open) => changes.push([k, open]));
  // One destination opened (two failures), then a stream of one-failure destinations.
  m.recordFailure('sick', 0);
  m.recordFailure('sick', 0);
  assert.equal(m.openCount, 1);
  for (let i = 0; i < 255; i++) m.recordFailure(`once-${i}`, 0);
  assert.equal(m.size, 256);
  // Still recent: nothing is forgotten, however many arrive.
  for (let i = 0; i < 300; i++) m.recordFailure(`recent-${i}`, 20 * S);
  assert.equal(m.size, 556);
  // Long after (past maxOpenMs + probeTimeoutMs of silence): the next growth sweeps the old ones.
  const later = 200 * S;
  for (let i = 0; i < 600; i++) m.recordFailure(`later-${i}`, later + i);
  assert.ok(m.size <= 600 + 1, `size ${m.size}`);
  assert.equal(m.state('once-0', later), 'closed');
  assert.equal(m.state('sick', later), 'closed', 'the open breaker nobody asked about for so long is forgotten');
  assert.equal(m.openCount, 0);
  assert.deepEqual(changes, [['sick', true], ['sick', false]], 'and its alert is told it closed');
  // A breaker still in use is kept: a probe let through touches it.
  m.recordFailure('busy', later);
  m.recordFailure('busy', later);
  assert.equal(m.canAttempt('busy', later + 31 * S), true);
  m.sweep(later + 31 * S + 60 * S);
  assert.equal(m.state('busy', later + 31 * S + 60 * S), 'half-open');
});
