// Per-destination delivery statistics: outcome counts, a latency histogram of whole
// transactions and the last reply, keyed by destination key. The scheduler records one entry
// per transaction; /metrics (Prometheus histogram) and /v1/stats (the dashboard) read them.
// The number of series is bounded so that a stream of new destinations cannot grow memory.
import type { RecipientResult } from './types.js';

/** Upper bounds (seconds) of the per-destination delivery latency histogram. */
export const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;
/** Per-destination series are bounded: past this many keys, new destinations count as "other". */
export const MAX_DESTINATION_SERIES = 500;

export interface DestinationStats {
  delivered: number;
  deferred: number;
  bounced: number;
  /** Counts per LATENCY_BUCKETS_S slot (non-cumulative); the last slot is above the largest bound. */
  buckets: number[];
  latencySum: number;
  latencyCount: number;
  // The last reply seen for this destination (the last result of its last transaction).
  lastReply?: { code?: number; enhanced?: string; text: string; at: number };
}

export class DestinationStatsTable {
  /** Counters and transaction latency per destination key (at most MAX_DESTINATION_SERIES + "other"). */
  readonly series = new Map<string, DestinationStats>();

  /** One transaction to `key` that took `seconds` and ended with `results`, at time `now` (ms). */
  record(key: string, seconds: number, results: readonly RecipientResult[], now: number): void {
    let s = this.series.get(key);
    if (!s) {
      if (this.series.size >= MAX_DESTINATION_SERIES) key = 'other';
      s = this.series.get(key);
      if (!s) {
        s = { delivered: 0, deferred: 0, bounced: 0, buckets: new Array<number>(LATENCY_BUCKETS_S.length + 1).fill(0), latencySum: 0, latencyCount: 0 };
        this.series.set(key, s);
      }
    }
    for (const r of results) {
      if (r.kind === 'delivered') s.delivered++;
      else if (r.kind === 'deferred') s.deferred++;
      else s.bounced++;
    }
    let i = 0;
    while (i < LATENCY_BUCKETS_S.length && seconds > LATENCY_BUCKETS_S[i]!) i++;
    s.buckets[i]!++;
    s.latencySum += seconds;
    s.latencyCount++;
    // Record the last reply for this destination.
    const last = results[results.length - 1];
    if (last) {
      const rep = last.reply;
      s.lastReply = { text: rep.text, at: now, ...(rep.code !== undefined ? { code: rep.code } : {}), ...(rep.enhanced !== undefined ? { enhanced: rep.enhanced } : {}) };
    }
  }
}
