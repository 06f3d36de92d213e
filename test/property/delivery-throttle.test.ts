// The GCRA throttle (src/delivery/throttle.ts) as a property: whatever the gaps between
// requests, no window ever admits more than burst + rate × window events, and a take after
// the announced wait succeeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Throttle } from '../../src/delivery/throttle.js';

test('Throttle: no window admits more than burst + rate × window (property)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 50 }), // interval ms
      fc.integer({ min: 1, max: 5 }), // burst
      fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 200 }), // gaps between requests
      (interval, burst, gaps) => {
        const t = new Throttle(1 / interval, burst);
        const admitted: number[] = [];
        let now = 0;
        for (const g of gaps) {
          now += g;
          const wait = t.take(now);
          if (wait === 0) admitted.push(now);
          else {
            assert.ok(wait > 0 && wait <= interval * burst);
            assert.equal(t.take(now + wait), 0, 'after the announced wait the take succeeds');
            admitted.push(now + wait);
            now += wait;
          }
        }
        for (let i = 0; i < admitted.length; i++) {
          for (let j = i; j < admitted.length; j++) {
            const window = admitted[j]! - admitted[i]!;
            assert.ok(j - i + 1 <= burst + Math.floor(window / interval), `${j - i + 1} events in ${window} ms`);
          }
        }
      },
    ),
  );
});

test('Throttle: a rate whose interval is not exact in binary (1 / 49 per ms) waits exactly 49 ms, then admits', () => {
  // fast-check's counterexample [49, 1, [0, 0]]: 1 / (1 / 49) is 49.00000000000001, which made the
  // wait 50 (more than one interval) and a take after 49 ms a further wait of 1 ms.
  const t = new Throttle(1 / 49, 1);
  assert.equal(t.take(0), 0);
  assert.equal(t.take(0), 49);
  assert.equal(t.take(49), 0);
  assert.equal(t.take(49), 49);
});
