// Messages waiting for a destination: the wait index (keys.ts WaitKey), filled by settle for a
// deferral caused by the destination itself, and read here. release() makes the oldest
// messages waiting for one destination due now (one range read of the index, then their
// records, in one write transaction); counts() reads the per-destination counters.
// docs/queue.md "Waiting for a destination".
import { CounterDelta, readPrefixed } from './counters.js';
import { COUNTER, waitRange, type WaitKey } from './keys.js';
import type { Logger } from '../log/logger.js';
import type { RecordStore, Writer } from './record-store.js';
import { invalidArgument } from '../lib/invalid-argument.js';

export class DestinationWaits {
  readonly #store: RecordStore;
  readonly #write: Writer;
  readonly #log: Logger;
  readonly #clock: () => number;

  constructor(store: RecordStore, write: Writer, log: Logger, clock: () => number) {
    this.#store = store;
    this.#write = write;
    this.#log = log;
    this.#clock = clock;
  }

  /**
   * Make up to `limit` messages waiting for `destination` (oldest first) due now: each loses
   * its whole `waitFor` (it leaves the index under every destination) and gets
   * nextAttemptAt = min(its own, now), so it keeps its place when it was already due. Returns
   * their ids; fewer than `limit` means none is left waiting for it.
   */
  release(destination: string, limit: number): Promise<string[]> {
    const n = Math.floor(limit);
    if (typeof destination !== 'string') return Promise.reject(invalidArgument('release: destination must be a string', 'type'));
    if (!(n > 0)) return Promise.resolve([]);
    return this.#write('release-waiting', () => {
      const store = this.#store;
      const nowMs = Math.floor(this.#clock());
      // Read phase: the index entries, then their records, before any write.
      const entries = Array.from(store.waits!.getRange({ ...waitRange(destination), limit: n })) as { key: WaitKey; value: string }[];
      const recs = entries.map((e) => store.read(e.value));
      const delta = new CounterDelta();
      const out: string[] = [];
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        const rec = recs[i];
        if (rec === undefined || rec.state !== 'ready' || !(rec.waitFor ?? []).includes(destination)) {
          void store.waits!.remove(e.key);
          this.#log.warn({ id: e.value, key: e.key, state: rec?.state }, 'stale wait key dropped');
          continue;
        }
        store.update(rec, () => {
          rec.waitFor = undefined;
          if (rec.nextAttemptAt > nowMs) rec.nextAttemptAt = nowMs;
          return true;
        }, delta);
        out.push(rec.id);
      }
      delta.applyTo(store.counters);
      return out;
    });
  }

  /** Ready messages waiting for each destination key (stored counters: O(destinations)). */
  counts(): Record<string, number> {
    return readPrefixed(this.#store.counters, COUNTER.waitPrefix);
  }
}
