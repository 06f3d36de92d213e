// What every route receives: the dependencies handed to startHttpServer and the API's own
// counters. A separate file so routes and server.ts both import it without a cycle.
import type { MailEvent } from '../queue/events.js';
import type { Config } from '../config/schema.js';
import type { Scheduler } from '../delivery/scheduler.js';
import type { DestinationStats } from '../delivery/destination-stats.js';
import type { AlertEngine } from '../delivery/alerts.js';
import type { Logger } from '../log/logger.js';
import type { Queue } from '../queue/store.js';
import type { ThrottleMap } from '../delivery/throttle.js';
import type { SmtpCounters } from '../smtp/context.js';
import type { CachedCounts } from './cached-counts.js';
import type { ProcessMetrics } from './process-metrics.js';
import type { BounceStatsView } from '../delivery/failure-tally.js';
import type { ShapingView } from '../delivery/shaping/shaping-view.js';
import type { BodyBudgetStats } from '../smtp/body-budget.js';

export interface HttpDeps {
  config: Readonly<Config>;
  /** An inherited listening socket to serve on instead of binding POSTERN_HTTP_HOST:PORT. */
  fd?: number;
  queue: Queue;
  log: Logger;
  smtpCounters: () => SmtpCounters;
  /** The SMTP sessions' body memory (POSTERN_MAX_BODY_MEMORY), for /metrics. */
  bodyMemory?: () => BodyBudgetStats & { limit: number; perClient: number };
  /** null when delivery is off. */
  delivery: () => Scheduler['counters'] | null;
  /** Called after each injected message is durably queued (main.ts wakes the scheduler). */
  onQueued?: () => void;
  /** The anomaly alerts (docs/alerts.md), for /metrics and /v1/alerts; null when delivery is off. */
  alerts?: () => AlertEngine | null;
  /** Per-destination delivery counters and latency (the scheduler's), for /metrics. */
  destinations?: () => ReadonlyMap<string, DestinationStats> | null;
  /** Share of the filter workers' time spent busy (0-1), or null without filters. */
  filterUtilization?: () => number | null;
  /** Batches sent to the filter workers and the messages they carried. */
  filterBatches?: () => { batches: number; messages: number } | null;
  /** Worker-time with work and the oldest wait for a worker (FilterPool.load), or null without filters. */
  filterLoad?: () => { workers: number; busyWorkerMs: number; oldestWaitMs: number } | null;
  /** Shaping state per source × site, the `limit` most active (delivery/shaping/shaping-view.ts); null when delivery is off. */
  shaping?: (limit: number) => ShapingView | null;
  /** Destinations whose circuit breaker is open now. */
  openCircuits?: () => number;
  /** Connection-pool counts per destination key, for /v1/stats; null when delivery is off. */
  pools?: () => Record<string, { open: number; idle: number; busy: number; waiting: number }> | null;
  /** Failures by bounce category and the bounce processor's counters; null when delivery is off. */
  bounces?: () => BounceStatsView | null;
  /** Event webhooks: a 'received' event per injected message. */
  onEvent?: (e: MailEvent) => void;
  /** Event webhook counters (POSTERN_EVENTS_URL), or null when it is off. */
  events?: () => { pending: number; dropped: number; sent: number; failures: number; aggregated: number } | null;
  /** Readiness: queue open, listeners up, not draining. */
  ready: () => boolean;
  /** Is this a pool of the shaping file now (the inject endpoint's `pool`)? Absent: no pool exists. */
  poolExists?: (name: string) => boolean;
}

export interface HttpStats {
  /** Keyed by `${method} ${route} ${code}`. */
  readonly requests: Map<string, { method: string; route: string; code: number; n: number }>;
  messagesInjected: number;
  bytesInjected: number;
  /** Valid-looking injections the queue could not store (503). */
  messagesRejected: number;
}

export interface Api {
  readonly deps: HttpDeps;
  readonly stats: HttpStats;
  /** Process, GC and event-loop lag metrics (cumulative: never reset by a read). */
  readonly process: ProcessMetrics;
  /** Per-client-address limiter (POSTERN_HTTP_RATE); null = unlimited. */
  readonly rateLimit: ThrottleMap | null;
  /** Requests without the right token, per address: 5 a second, a burst of 20; past it 429. */
  readonly authFailures: ThrottleMap;
  /** Queue counts for /metrics and /v1/stats, recounted at most once a second. */
  readonly counts: CachedCounts;
  /** Ready messages waiting for each destination to work again (queue wait index), same cache age. */
  readonly waiting: CachedCounts<Record<string, number>>;
}
