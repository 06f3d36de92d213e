// TlsFallback (src/delivery/tls-fallback.ts): who may fall back to clear, a host held until
// its time and then forgotten, held once (the first hold is the one logged), and the number of
// hosts bounded with the first to expire dropped first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TlsFallback, tlsFallbackAllowed, tlsFallbackKey } from '../../src/delivery/tls-fallback.js';

test('only plain opportunistic TLS may fall back', () => {
  assert.equal(tlsFallbackAllowed({ tlsPolicy: 'opportunistic' }), true);
  assert.equal(tlsFallbackAllowed({ tlsPolicy: 'opportunistic', tlsAuth: { policyDomain: 'x.test', type: 'no-policy-found', enforce: false } }), true);
  assert.equal(tlsFallbackAllowed({ tlsPolicy: 'opportunistic', tlsAuth: { policyDomain: 'x.test', type: 'sts', enforce: false } }), true, 'MTA-STS testing');
  assert.equal(tlsFallbackAllowed({ tlsPolicy: 'opportunistic', tlsAuth: { policyDomain: 'x.test', type: 'sts', enforce: true } }), false);
  assert.equal(tlsFallbackAllowed({ tlsPolicy: 'opportunistic', tlsAuth: { policyDomain: 'x.test', type: 'tlsa', enforce: false } }), false);
  assert.equal(tlsFallbackAllowed({ tlsPolicy: 'opportunistic', auth: { user: 'u', password: 'p' } }), false);
  for (const p of ['required', 'implicit', 'none'] as const) assert.equal(tlsFallbackAllowed({ tlsPolicy: p }), false, p);
});

test('a host is held until its time, once, then forgotten; the key is the address, else the name', () => {
  const f = new TlsFallback({ holdMs: 1000 });
  const k = tlsFallbackKey('MX.example.net', 25, '192.0.2.1');
  assert.equal(k, '192.0.2.1:25');
  assert.equal(tlsFallbackKey('MX.example.net', 25), 'mx.example.net:25');
  assert.equal(f.held(k, 0), false);
  assert.equal(f.hold(k, 0), 1000);
  assert.equal(f.hold(k, 500), null, 'already held: not held (nor logged) again');
  assert.equal(f.held(k, 999), true);
  assert.equal(f.held(k, 1000), false);
  assert.equal(f.size, 0, 'an expired host is dropped when asked');
  assert.equal(f.hold(k, 1000), 2000);
});

test('at most maxHosts hosts, the oldest dropped first', () => {
  const f = new TlsFallback({ holdMs: 60_000, maxHosts: 3 });
  for (let i = 0; i < 5; i++) f.hold(`h${i}:25`, i);
  assert.equal(f.size, 3);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => f.held(`h${i}:25`, 10)), [false, false, true, true, true]);
});
