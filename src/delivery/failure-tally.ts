// Delivery failures counted by bounce category (lib/bounce-class.ts) and kind, for /metrics
// (postern_delivery_failures_total), /v1/stats and the dashboard: the scheduler's synchronous
// outcomes (bounced: permanent, deferred: temporary) and the bounce processor's asynchronous
// reports (async-bounced, async-deferred). At most 12 categories × 4 kinds.
import type { BounceCategory } from '../lib/bounce-class.js';

export type FailureKind = 'bounced' | 'deferred' | 'async-bounced' | 'async-deferred';

export interface FailureCount {
  category: BounceCategory;
  kind: FailureKind;
  count: number;
}

export class FailureTally {
  readonly #counts = new Map<string, FailureCount>();

  add(category: BounceCategory, kind: FailureKind): void {
    const k = `${category} ${kind}`;
    const c = this.#counts.get(k);
    if (c) c.count++;
    else this.#counts.set(k, { category, kind, count: 1 });
  }

  /** Sorted by category, then kind. */
  list(): FailureCount[] {
    return [...this.#counts.values()].map((c) => ({ ...c })).sort((a, b) => (a.category === b.category ? a.kind.localeCompare(b.kind) : a.category.localeCompare(b.category)));
  }
}

/** What /metrics, /v1/stats and the dashboard read (Scheduler.bounceStats()). */
export interface BounceStatsView {
  failures: FailureCount[];
  /** The bounce processor's counters; null when no VERP domain or bounce address is set. */
  reports: { reports: number; dsn: number; arf: number; ignored: number; unmatched: number; suppressed: number; complaints: number } | null;
  /** Outbound transactions sent without a VERP sender (the address would be too long). */
  verpSkipped: number;
}
