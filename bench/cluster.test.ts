// The cluster bench's run at a tiny size (not timed): through HAProxy and two nodes sharing a
// Redis, and direct, every injected message reaches the sink and the figures are filled in.
// Skipped when haproxy or redis-server is missing outside CI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterOnce } from './cluster.js';
import { haproxySkip } from '../test/helpers/haproxy.js';
import { REDIS_SKIP } from '../test/helpers/redis-server.js';

const o = { messages: 20, size: 2048, connections: 2, timeLimitMs: 60_000 };

test('clusterOnce: 20 messages direct and through HAProxy to 2 nodes, all delivered', { skip: haproxySkip() || REDIS_SKIP }, async () => {
  for (const setup of ['direct', 2] as const) {
    const r = await clusterOnce(setup, o);
    assert.equal(r.setup, setup);
    assert.equal(r.messages, 20);
    assert.equal(r.delivered, 20, JSON.stringify(r));
    assert.equal(r.timedOut, false);
    assert.ok(r.msgsPerSec > 0 && r.acceptPerSec > 0, JSON.stringify(r));
  }
});
