// The warm-up counts (docs/shaping.md "Warm-up"): transactions sent per source × site on each
// UTC day, kept in the queue's LMDB environment (sub-database 'warmup') so a restart does not
// hand a warming-up address a second budget the same day. The shaper counts in memory and
// tells this store each new value; the store writes them behind, at most WRITE_BEHIND_MS
// later, in one of the queue's batched write transactions (no fsync per message), and on close.
//
//   key [day, "source|site"]  →  count (a number; the newest value, not a delta: a lost or
//                                 repeated write cannot count twice)
//
// Days before yesterday are pruned when the day's first batch is written.
import { createHash } from 'node:crypto';
import type { Database } from 'lmdb';
import type { Logger } from '../log/logger.js';

type Writer = <T>(op: string, fn: () => T) => Promise<T>;
type WarmupKey = [day: number, key: string];

/** How long a new count may wait in memory before it is written: what a crash can lose. */
export const WRITE_BEHIND_MS = 1000;
/** Keys longer than this ("source|site" of a site no rule names is its MX host list) are hashed: LMDB keys are bounded. */
const MAX_KEY_CHARS = 200;

function storedKey(key: string): string {
  return key.length <= MAX_KEY_CHARS ? key : `sha256:${createHash('sha256').update(key).digest('hex')}`;
}

export class WarmupCounts {
  readonly #db: Database<number, WarmupKey>;
  readonly #write: Writer;
  readonly #log: Logger;
  /** Values not written yet: "day|key" → the entry. */
  readonly #dirty = new Map<string, { day: number; key: string; n: number }>();
  #timer: NodeJS.Timeout | null = null;
  #prunedDay = -1;
  #closed = false;

  /** Built by Queue: `write` runs its callback in one of the queue's write transactions. */
  constructor(db: Database<number, WarmupKey>, write: Writer, log: Logger) {
    this.#db = db;
    this.#write = write;
    this.#log = log;
  }

  /** The count of `key` ("source|site") on UTC day `day` (days since the epoch): the newest value told, else the stored one, else 0. */
  get(day: number, key: string): number {
    const d = this.#dirty.get(`${day}|${key}`);
    if (d !== undefined) return d.n;
    const v = this.#db.get([day, storedKey(key)]);
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0;
  }

  /** The count of `key` on `day` is now `n`: written within WRITE_BEHIND_MS. */
  set(day: number, key: string, n: number): void {
    if (this.#closed) return;
    this.#dirty.set(`${day}|${key}`, { day, key, n });
    this.#timer ??= setTimeout(() => void this.flush(), WRITE_BEHIND_MS).unref();
  }

  /** Write what is pending now (Queue.close() calls it before the environment closes). */
  flush(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#dirty.size === 0) return Promise.resolve();
    const batch = [...this.#dirty.values()];
    this.#dirty.clear();
    const newest = batch.reduce((d, e) => Math.max(d, e.day), 0);
    const prune = newest > this.#prunedDay;
    this.#prunedDay = Math.max(this.#prunedDay, newest);
    return this.#write('warmup-counts', () => {
      for (const e of batch) void this.#db.put([e.day, storedKey(e.key)], e.n);
      if (prune) for (const k of Array.from(this.#db.getKeys({ end: [newest - 1] }))) void this.#db.remove(k);
    }).catch((err: unknown) => {
      // Not fatal: the counts stay right in memory; only a restart would forget them.
      this.#log.warn({ err, counts: batch.length }, 'warm-up counts not written');
    });
  }

  /** Write what is pending and take no more (the queue is closing). */
  close(): Promise<void> {
    const last = this.flush();
    this.#closed = true;
    return last;
  }

  /** Every stored count, oldest day first (tests, `postern queue` tools). */
  entries(): Array<{ day: number; key: string; n: number }> {
    const out: Array<{ day: number; key: string; n: number }> = [];
    for (const { key, value } of this.#db.getRange({})) out.push({ day: key[0], key: key[1], n: value });
    return out;
  }
}
