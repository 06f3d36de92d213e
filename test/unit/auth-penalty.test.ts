// AUTH failure back-off (src/auth/auth-penalty.ts) on a fake clock: Dovecot's 2^n delay,
// refusal at the threshold, attempts in flight counted, decay, per-user counts across
// clients with the user's known clients admitted, trusted clients exempt from the per-client
// count only, and the tables bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthPenalty, penaltyDelayMs, type AuthAdmission } from '../../src/auth/auth-penalty.js';

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

function admitted(a: AuthAdmission): Extract<AuthAdmission, { refused: false }> {
  assert.equal(a.refused, false, 'expected the attempt to be admitted');
  return a as Extract<AuthAdmission, { refused: false }>;
}

test('penaltyDelayMs: none before a failure, then 2 s, 4 s, 8 s, capped', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 50].map((n) => penaltyDelayMs(n, 15_000)), [0, 2000, 4000, 8000, 15_000, 15_000]);
  assert.equal(penaltyDelayMs(5, 0), 0);
});

test('a client: delays grow with its failures, the threshold refuses, the count decays', () => {
  const c = clock();
  const p = new AuthPenalty({ maxFailures: 3, userMaxFailures: 100, lockoutMs: 60_000, maxDelayMs: 15_000, now: c.now });
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    const a = admitted(p.begin('192.0.2.1', `user${i}`, false));
    delays.push(a.delayMs);
    a.settle('bad');
  }
  assert.deepEqual(delays, [0, 2000, 4000]);
  assert.equal(p.begin('192.0.2.1', 'someone', false).refused, true);
  // Another client is not affected.
  const other = admitted(p.begin('192.0.2.2', 'someone', false));
  assert.equal(other.delayMs, 0);
  other.settle('void');
  c.advance(59_999);
  assert.equal(p.begin('192.0.2.1', 'someone', false).refused, true, 'still locked just before lockoutMs');
  c.advance(1);
  assert.equal(admitted(p.begin('192.0.2.1', 'someone', false)).delayMs, 0, 'forgotten lockoutMs after the last failure');
});

test('attempts in flight count: parallel connections get no more guesses than the threshold', () => {
  const p = new AuthPenalty({ maxFailures: 3, userMaxFailures: 100, lockoutMs: 60_000, maxDelayMs: 15_000, now: clock().now });
  const inFlight = [0, 1, 2].map((i) => admitted(p.begin('192.0.2.1', `u${i}`, false)));
  assert.deepEqual(inFlight.map((a) => a.delayMs), [0, 2000, 4000]);
  assert.equal(p.begin('192.0.2.1', 'u3', false).refused, true);
  // Attempts that checked nothing (a full queue, a closed session) give their place back.
  inFlight[0]!.settle('void');
  inFlight[0]!.settle('bad'); // settling twice counts once
  admitted(p.begin('192.0.2.1', 'u4', false)).settle('void');
  inFlight[1]!.settle('bad');
  inFlight[2]!.settle('bad');
  assert.equal(admitted(p.begin('192.0.2.1', 'u5', false)).delayMs, 4000, 'two failures counted');
});

test('a success clears its client, not the user; the user count locks a name across clients, but not its known clients', () => {
  const p = new AuthPenalty({ maxFailures: 100, userMaxFailures: 3, lockoutMs: 60_000, maxDelayMs: 15_000, now: clock().now });
  admitted(p.begin('198.51.100.9', 'alice', false)).settle('ok'); // alice's usual place
  for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) admitted(p.begin(ip, 'alice', false)).settle('bad');
  assert.equal(p.begin('192.0.2.4', 'alice', false).refused, true, 'a new client is refused for alice');
  assert.equal(p.begin('192.0.2.4', 'alice', true).refused, true, 'trusted clients too');
  const known = admitted(p.begin('198.51.100.9', 'alice', false));
  assert.equal(known.delayMs, 0, 'her known client is neither delayed nor refused');
  known.settle('ok');
  assert.equal(p.begin('192.0.2.4', 'alice', false).refused, true, 'her login does not reset the attack on her name');
  // A name that does not exist locks the same way: the answers tell nothing.
  for (const ip of ['192.0.2.1', '192.0.2.2', '192.0.2.3']) admitted(p.begin(ip, 'nobody', false)).settle('bad');
  assert.equal(p.begin('192.0.2.4', 'nobody', false).refused, true);
  // A success clears the client's own count.
  const q = new AuthPenalty({ maxFailures: 2, userMaxFailures: 100, lockoutMs: 60_000, maxDelayMs: 15_000, now: clock().now });
  admitted(q.begin('192.0.2.1', 'x', false)).settle('bad');
  admitted(q.begin('192.0.2.1', 'bob', false)).settle('ok');
  assert.equal(admitted(q.begin('192.0.2.1', 'y', false)).delayMs, 0);
});

test('trusted clients are exempt from the per-client count', () => {
  const p = new AuthPenalty({ maxFailures: 2, userMaxFailures: 100, lockoutMs: 60_000, maxDelayMs: 15_000, now: clock().now });
  for (let i = 0; i < 10; i++) {
    const a = admitted(p.begin('127.0.0.1', `user${i}`, true));
    assert.equal(a.delayMs, 0);
    a.settle('bad');
  }
});

test('both tables are bounded: least recently used entries go first', () => {
  const p = new AuthPenalty({ maxFailures: 5, userMaxFailures: 5, lockoutMs: 60_000, maxDelayMs: 0, maxEntries: 100, now: clock().now });
  for (let i = 0; i < 1000; i++) admitted(p.begin(`10.0.${i >> 8}.${i & 255}`, `name${i}`, false)).settle('bad');
  assert.deepEqual(p.sizes, { clients: 100, users: 100 });
  // Entries that hold nothing are not kept at all.
  const q = new AuthPenalty({ maxFailures: 5, userMaxFailures: 5, lockoutMs: 60_000, maxDelayMs: 0, now: clock().now });
  admitted(q.begin('192.0.2.1', 'x', false)).settle('void');
  assert.deepEqual(q.sizes, { clients: 0, users: 0 });
});
