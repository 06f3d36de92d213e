// The queue counts that /metrics and /v1/stats show, recounted at most once per maxAgeMs.
// Queue.counts() walks the due index over every scheduled message (about 10 ms per 100,000
// queued), and both endpoints are polled, /metrics without a token by default: without this,
// a loop of scrapes would stall the event loop. The price is counts up to maxAgeMs old there;
// GET /v1/queue and the admin endpoints still count afresh. The same cache holds the messages
// waiting per destination (one counter read per destination that has some).
import type { QueueCounts } from '../queue/types.js';

/** Counts shown by /metrics and /v1/stats are at most this old. */
export const QUEUE_COUNTS_MAX_AGE_MS = 1000;

export class CachedCounts<T = QueueCounts> {
  readonly #count: () => T;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  #value: T | null = null;
  #at = 0;

  constructor(count: () => T, maxAgeMs = QUEUE_COUNTS_MAX_AGE_MS, now: () => number = () => performance.now()) {
    this.#count = count;
    this.#maxAgeMs = maxAgeMs;
    this.#now = now;
  }

  /** The last counts if fresh enough, else a new count. Throws what counts() throws (nothing is cached then). */
  get(): T {
    const now = this.#now();
    if (this.#value !== null && now - this.#at < this.#maxAgeMs) return this.#value;
    const v = this.#count();
    this.#value = v;
    this.#at = now;
    return v;
  }
}
