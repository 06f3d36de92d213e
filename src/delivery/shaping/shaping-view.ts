// The shaping state /v1/stats shows (docs/shaping.md): per source × site, the concurrency window
// and rate in force (lowered by the adaptive back-off), the transactions in flight and waiting,
// the suspension (until when, why) and a warming-up source's count against today's budget.
// Bounded: the `limit` most active states (suspended first, then by transactions in flight and
// waiting, then by transactions admitted), and how many more there are.
import type { SiteState } from './site-state.js';

export interface ShapingStateView {
  source: string;
  /** A site the shaping file names, or the destination key of a destination outside every site. */
  site: string;
  /** Concurrent transactions allowed now; null: unlimited (Maildir, webhook). */
  window: number | null;
  maxConnections: number | null;
  /** Messages per second allowed now; null: unlimited. */
  ratePerSecond: number | null;
  inflight: number;
  waiting: number;
  throttles: number;
  admitted: number;
  /** null unless suspended now. */
  suspended: { until: string; reason: string; reply: string } | null;
  /** null unless the source is warming up: messages counted today (UTC) and the day's budget. */
  warmup: { sent: number; budget: number } | null;
}

export interface ShapingView {
  states: ShapingStateView[];
  /** States left out past the limit. */
  more: number;
}

/** Longest reply text of a suspension sent to the page (it is the remote server's text). */
export const SUSPEND_REPLY_MAX = 200;

export function shapingView(states: ReadonlyMap<string, SiteState>, warmupToday: (key: string, now: number) => { sent: number; budget: number } | null, limit: number, now: number): ShapingView {
  const ranked = [...states.values()].sort((a, b) => rank(b, now) - rank(a, now) || b.admitted - a.admitted || (a.key < b.key ? -1 : 1));
  const out = ranked.slice(0, Math.max(0, limit)).map((s): ShapingStateView => {
    const bar = s.key.indexOf('|');
    const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);
    const w = finite(Math.floor(s.window));
    const why = s.suspendedFor;
    return {
      source: s.key.slice(0, bar),
      site: s.key.slice(bar + 1),
      window: w,
      maxConnections: finite(s.ceilings.maxConnections),
      ratePerSecond: s.rate === null ? null : Math.round(s.rate * 1000 * 1000) / 1000,
      inflight: s.inflight,
      waiting: s.waiting,
      throttles: s.throttles,
      admitted: s.admitted,
      suspended: s.suspendedUntil > now ? { until: new Date(s.suspendedUntil).toISOString(), reason: why?.reason ?? '', reply: clip(why?.reply ?? '') } : null,
      warmup: warmupToday(s.key, now),
    };
  });
  return { states: out, more: Math.max(0, ranked.length - out.length) };
}

/** Suspended states first (the ones to look at), then by transactions in flight and waiting. */
function rank(s: SiteState, now: number): number {
  return (s.suspendedUntil > now ? 1e9 : 0) + s.inflight + s.waiting;
}

function clip(t: string): string {
  return t.length > SUSPEND_REPLY_MAX ? `${t.slice(0, SUSPEND_REPLY_MAX - 1)}…` : t;
}
