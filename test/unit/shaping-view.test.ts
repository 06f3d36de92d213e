// The shaping state /v1/stats shows: bounded to the most active states (suspended first, then
// by transactions in flight and waiting, then admitted), with a count of the rest; each state's
// source and site from its "source|site" key, its window and rate, suspension and warm-up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SiteState } from '../../src/delivery/shaping/site-state.js';
import { shapingView, SUSPEND_REPLY_MAX } from '../../src/delivery/shaping/shaping-view.js';

test('shapingView: the top `limit` states, suspended first, then the busiest; the rest counted', async () => {
  const now = Date.now(); // the states pace on the real clock (a frozen one would never release the second admit)
  const states = new Map<string, SiteState>();
  for (let i = 0; i < 30; i++) {
    const key = `ip${i % 3}|site${i}`;
    states.set(key, new SiteState(key, { maxConnections: 4, rate: 0.01, adaptive: true }));
  }
  // site7 is busy (two transactions in flight), site20 is suspended by a blocklist reply.
  const busy = states.get('ip1|site7')!;
  assert.equal(await busy.admit(), 'go');
  assert.equal(await busy.admit(), 'go');
  states.get('ip2|site20')!.suspend(now + 60_000, { reason: 'blocklist', reply: `554 5.7.1 blocked using zen.spamhaus.org ${'x'.repeat(300)}` });
  const v = shapingView(states, (key) => (key === 'ip1|site7' ? { sent: 2, budget: 50 } : null), 20, now);
  assert.equal(v.states.length, 20);
  assert.equal(v.more, 10);
  assert.deepEqual(v.states.slice(0, 2).map((s) => [s.source, s.site]), [['ip2', 'site20'], ['ip1', 'site7']]);
  const [sus, b] = v.states;
  assert.equal(sus!.suspended!.reason, 'blocklist');
  assert.equal(sus!.suspended!.until, new Date(now + 60_000).toISOString());
  assert.equal(sus!.suspended!.reply.length, SUSPEND_REPLY_MAX, 'the remote text is clipped');
  assert.deepEqual({ window: b!.window, maxConnections: b!.maxConnections, ratePerSecond: b!.ratePerSecond, inflight: b!.inflight, admitted: b!.admitted, warmup: b!.warmup }, { window: 4, maxConnections: 4, ratePerSecond: 10, inflight: 2, admitted: 2, warmup: { sent: 2, budget: 50 } });
  // The suspension over: no longer first, no longer shown as suspended.
  const later = shapingView(states, () => null, 1, now + 60_000);
  assert.deepEqual([later.states[0]!.site, later.states[0]!.suspended, later.more], ['site7', null, 29]);
});
