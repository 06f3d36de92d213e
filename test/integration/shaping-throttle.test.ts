// Adaptive back-off end to end (issue 14), scaled down from the bench's shaping scenario
// (bench/shaping.ts): 300 messages to a provider that allows 3 connections and 50 messages a
// second, from a node with the default settings. Everything must arrive within three times
// the ideal time (300 / 50 = 6 s), nothing bounce, and few connections be refused: throttling
// replies lower the limits and come back in seconds instead of opening the circuit breaker
// and waiting for the 5-minute retry schedule.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { shapingOnce } from '../../bench/shaping.js';

test('a throttling provider (3 connections, 50 msg/s) gets 300 messages within 3x the ideal time, none bounced, few refusals', async () => {
  const r = await shapingOnce({ messages: 300, maxConnections: 3, ratePerSec: 50, timeLimitMs: 60_000 });
  console.log(`# shaping: ${JSON.stringify(r)}`);
  assert.equal(r.messages, 300);
  assert.equal(r.bounced, 0);
  assert.equal(r.delivered, 300);
  assert.ok(r.ratio <= 3, `delivered in ${Math.round(r.elapsedMs)} ms, ${r.ratio.toFixed(2)}x the ideal ${r.idealMs} ms`);
  assert.ok(r.refused <= 12, `${r.refused} of ${r.connections} connection attempts refused`);
});
