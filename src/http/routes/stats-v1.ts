// GET /v1/stats: one compact JSON snapshot of the counters the dashboard (GET /) polls every
// second. Cumulative counters only; the page derives rates from successive snapshots. Same
// sources as /metrics; the lag reported is the mean since the previous /v1/stats call, from
// the change in the event-loop histogram's sum and count (no read resets it).
import { PosternError } from '../../errors.js';
import type { Api } from '../api.js';
import type { Histogram } from '../process-metrics.js';
import { ok } from '../respond.js';
import type { Route } from '../router.js';
import type { BounceStatsView } from '../../delivery/failure-tally.js';
import type { DestinationStats } from '../../delivery/destination-stats.js';
import type { ShapingView } from '../../delivery/shaping/shaping-view.js';

export const TOP_DOMAINS = 10;
/** Destinations listed in /v1/stats: those with messages waiting for them first, then the busiest by delivered+deferred+bounced. */
export const TOP_DESTINATIONS = 10;
/** Longest last-reply text sent to the page. */
export const REPLY_TEXT_MAX = 200;

export interface DestinationSnapshot {
  key: string;
  delivered: number;
  deferred: number;
  bounced: number;
  /** Mean transaction latency (ms); null before the first transaction. */
  meanMs: number | null;
  lastReply: { code?: number; enhanced?: string; text: string; at: string } | null;
  /** null when the destination has no connection pool (Maildir, webhook, worker-thread SMTP). */
  pool: { open: number; idle: number; busy: number; waiting: number } | null;
  /** Queued messages waiting for this destination to answer again (it was down). */
  waitingForReturn: number;
}

export interface StatsSnapshot {
  /** When the snapshot was taken (ISO 8601). */
  time: string;
  smtp: Record<string, number>;
  /** Messages injected over the HTTP API (received = smtp.messagesAccepted + http.messagesInjected). */
  http: { messagesInjected: number; messagesRejected: number };
  /** null when delivery is off. */
  delivery: Record<string, number> | null;
  /** null when the queue is closing. */
  queue: {
    total: number;
    byState: { ready: number; scheduled: number; leased: number; held: number };
    byPriority: { urgent: number; normal: number; bulk: number };
    /** Pending recipients per domain, busiest first, at most TOP_DOMAINS. */
    topDomains: [string, number][];
  } | null;
  commits: number;
  /** Commits that carried enqueues: messagesCommitted / enqueueCommits is messages per commit. */
  enqueueCommits: number;
  messagesCommitted: number;
  eventLoopLagMs: number;
  rssBytes: number;
  /** Busiest destinations (at most TOP_DESTINATIONS); [] when delivery is off. */
  destinations: DestinationSnapshot[];
  /** Share of the filter workers' time spent busy (0-1), or null without filters. */
  filterUtilization: number | null;
  /** Failures by bounce category and kind, and the bounce processor's counters; null when delivery is off. */
  bounces: BounceStatsView | null;
  /** Shaping per source × site, the TOP_SHAPING most active, and how many more; null when delivery is off. */
  shaping: ShapingView | null;
  /** Anomaly alerts up now (docs/alerts.md), oldest first, at most TOP_ALERTS; [] when delivery is off. */
  alerts: Array<{ id: string; rule: string; scope: string; since: string; value: number; threshold: number }>;
}

/** Source × site shaping states listed (suspended first, then the busiest). */
export const TOP_SHAPING = 20;
/** Alerts shown on the dashboard: GET /v1/alerts has them all. */
const TOP_ALERTS = 50;

function destinationsSnapshot(api: Api): DestinationSnapshot[] {
  const map = api.deps.destinations?.() ?? null;
  if (map === null) return [];
  const pools = api.deps.pools?.() ?? null;
  let waiting: Record<string, number> = {};
  try {
    waiting = api.waiting.get();
  } catch (err) {
    if (!(err instanceof PosternError)) throw err; // closing: no waiting counts
  }
  const none: DestinationStats = { delivered: 0, deferred: 0, bounced: 0, buckets: [], latencySum: 0, latencyCount: 0 };
  // A destination with messages waiting is listed even before this process delivered to it
  // (after a restart), and ahead of the others: it is the one to look at.
  const keys = new Set([...map.keys(), ...Object.keys(waiting)]);
  const total = (d: { delivered: number; deferred: number; bounced: number }) => d.delivered + d.deferred + d.bounced;
  return [...keys]
    .map((key) => [key, map.get(key) ?? none, waiting[key] ?? 0] as const)
    .sort((a, b) => b[2] - a[2] || total(b[1]) - total(a[1]) || (a[0] < b[0] ? -1 : 1))
    .slice(0, TOP_DESTINATIONS)
    .map(([key, d, w]) => {
      const p = pools?.[key];
      const r = d.lastReply;
      return {
        key,
        waitingForReturn: w,
        delivered: d.delivered,
        deferred: d.deferred,
        bounced: d.bounced,
        meanMs: d.latencyCount > 0 ? Math.round((d.latencySum / d.latencyCount) * 100_000) / 100 : null,
        lastReply: r === undefined ? null : {
          ...(r.code !== undefined ? { code: r.code } : {}),
          ...(r.enhanced !== undefined ? { enhanced: r.enhanced } : {}),
          text: r.text.length > REPLY_TEXT_MAX ? `${r.text.slice(0, REPLY_TEXT_MAX - 1)}…` : r.text,
          at: new Date(r.at).toISOString(),
        },
        pool: p === undefined ? null : { open: p.open, idle: p.idle, busy: p.busy, waiting: p.waiting },
      };
    });
}

const lastLoop = new WeakMap<Histogram, { count: number; sum: number }>();

/** Mean lag (ms) since the previous call, from the cumulative histogram's sum and count. */
function lagSinceLastCall(h: Histogram): number {
  const prev = lastLoop.get(h) ?? { count: 0, sum: 0 };
  lastLoop.set(h, { count: h.count, sum: h.sum });
  return h.count > prev.count ? ((h.sum - prev.sum) / (h.count - prev.count)) * 1000 : 0;
}

export function statsSnapshot(api: Api): StatsSnapshot {
  const { deps, stats } = api;
  let queue: StatsSnapshot['queue'] = null;
  try {
    const c = api.counts.get(); // at most a second old (cached-counts.ts)
    const topDomains = Object.entries(c.byDomain)
      .filter(([, n]) => n > 0)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, TOP_DOMAINS);
    queue = { total: c.total, byState: { ...c.byState }, byPriority: { ...c.byPriority }, topDomains };
  } catch (err) {
    if (!(err instanceof PosternError)) throw err;
    queue = null; // closing: the rest of the snapshot is still worth showing
  }
  const d = deps.delivery();
  const qs = deps.queue.stats();
  return {
    time: new Date().toISOString(),
    smtp: { ...deps.smtpCounters() },
    http: { messagesInjected: stats.messagesInjected, messagesRejected: stats.messagesRejected },
    delivery: d === null ? null : { ...d },
    queue,
    commits: qs.commits,
    enqueueCommits: qs.enqueueCommits,
    messagesCommitted: qs.messagesCommitted,
    eventLoopLagMs: Math.round(lagSinceLastCall(api.process.loopLag) * 100) / 100,
    rssBytes: process.memoryUsage.rss(),
    destinations: destinationsSnapshot(api),
    filterUtilization: deps.filterUtilization?.() ?? null,
    bounces: deps.bounces?.() ?? null,
    shaping: deps.shaping?.(TOP_SHAPING) ?? null,
    alerts: (deps.alerts?.()?.active ?? []).slice(0, TOP_ALERTS).map((a) => ({ id: a.id, rule: a.rule, scope: a.scope, since: new Date(a.since).toISOString(), value: a.value, threshold: a.threshold })),
  };
}

export const statsV1: Route<Api> = {
  method: 'GET',
  path: '/v1/stats',
  auth: true,
  handler: (_c, api) => ok(statsSnapshot(api)),
};
