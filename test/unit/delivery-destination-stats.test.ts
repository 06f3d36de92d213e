// DestinationStatsTable on its own: outcome counts per key, the latency bucket chosen for a
// transaction (bounds inclusive, the last slot above the largest bound), the last reply kept
// for the dashboard, and the bound on the number of series (new keys past it go to "other").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DestinationStatsTable, LATENCY_BUCKETS_S, MAX_DESTINATION_SERIES } from '../../src/delivery/destination-stats.js';
import type { RecipientResult } from '../../src/delivery/types.js';

const ok = (address: string): RecipientResult => ({ kind: 'delivered', address, reply: { code: 250, enhanced: '2.0.0', text: 'queued', command: 'END-OF-DATA' } });
const soft = (address: string): RecipientResult => ({ kind: 'deferred', address, reply: { code: 451, enhanced: '4.3.0', text: 'later', command: 'RCPT' } });
const hard = (address: string): RecipientResult => ({ kind: 'failed', address, reply: { code: 550, text: 'no such user', command: 'RCPT' } });

test('counts outcomes, buckets the latency, keeps the last reply', () => {
  const t = new DestinationStatsTable();
  t.record('mx:a.test', 0.005, [ok('a@a.test'), soft('b@a.test'), hard('c@a.test')], 1000);
  t.record('mx:a.test', 0.3, [ok('d@a.test')], 2000);
  t.record('mx:a.test', 61, [soft('e@a.test')], 3000);
  const s = t.series.get('mx:a.test')!;
  assert.equal(s.delivered, 2);
  assert.equal(s.deferred, 2);
  assert.equal(s.bounced, 1);
  assert.equal(s.buckets.length, LATENCY_BUCKETS_S.length + 1);
  assert.equal(s.buckets[0], 1, '0.005 s falls in the first bucket (bound inclusive)');
  assert.equal(s.buckets[LATENCY_BUCKETS_S.indexOf(0.5)], 1, '0.3 s falls in the 0.5 s bucket');
  assert.equal(s.buckets[LATENCY_BUCKETS_S.length], 1, '61 s falls above the largest bound');
  assert.equal(s.latencyCount, 3);
  assert.ok(Math.abs(s.latencySum - 61.305) < 1e-9);
  assert.deepEqual(s.lastReply, { text: 'later', at: 3000, code: 451, enhanced: '4.3.0' });
  t.record('mx:a.test', 0.01, [hard('f@a.test')], 4000);
  assert.deepEqual(t.series.get('mx:a.test')!.lastReply, { text: 'no such user', at: 4000, code: 550 }, 'no enhanced key when the reply had none');
});

test('a transaction with no results still counts its latency and keeps the previous last reply', () => {
  const t = new DestinationStatsTable();
  t.record('k', 1, [ok('a@k')], 10);
  t.record('k', 1, [], 20);
  const s = t.series.get('k')!;
  assert.equal(s.latencyCount, 2);
  assert.equal(s.lastReply?.at, 10);
});

test('series are bounded: past the limit new keys count as "other", known keys keep their own', () => {
  const t = new DestinationStatsTable();
  for (let i = 0; i < MAX_DESTINATION_SERIES; i++) t.record(`d${i}`, 0.001, [ok('x@y')], 0);
  assert.equal(t.series.size, MAX_DESTINATION_SERIES);
  t.record('new-1', 0.001, [ok('x@y')], 0);
  t.record('new-2', 0.001, [soft('x@y')], 0);
  assert.equal(t.series.size, MAX_DESTINATION_SERIES + 1);
  assert.equal(t.series.has('new-1'), false);
  const other = t.series.get('other')!;
  assert.equal(other.delivered, 1);
  assert.equal(other.deferred, 1);
  t.record('d7', 0.001, [ok('x@y')], 0);
  assert.equal(t.series.get('d7')!.delivered, 2);
});
