// Anomaly alerts (docs/alerts.md): per destination and overall, the deferral and bounce rates of
// a sliding window against an exponentially weighted baseline, and shaping suspensions (a
// blocklist reply). Pure: fed recipient outcomes and suspensions, evaluated on an injected clock;
// main.ts wires it to the scheduler's events, the event log, the log, /metrics and /v1/alerts.
// An alert clears itself when its condition ends (with hysteresis, so it does not flap).

export type AlertRule = 'deferral-rate' | 'bounce-rate' | 'suspended' | 'redis-down';

export interface Alert {
  /** `${rule}:${scope}`: stable while the condition lasts, the same for the next episode. */
  id: string;
  rule: AlertRule;
  /** 'overall', 'destination:<key>' or, for suspensions, 'site:<site>/source:<address>'. */
  scope: string;
  /** When it was raised (ms since the epoch). */
  since: number;
  /** The rate (0-1) of the window at the last evaluation; for a suspension, when it ends (ms). */
  value: number;
  /** The rate it had to pass; for a suspension, 0. */
  threshold: number;
}

export interface AlertThresholds {
  /** Length of the sliding window the rates are measured over. */
  windowMs: number;
  /** Raise when the window's deferral rate passes max(this, baselineFactor × baseline). */
  deferralRate: number;
  bounceRate: number;
  /** No rate alert on fewer recipient outcomes than this in the window (one deferral is not a trend). */
  minSamples: number;
  /** A rate well above what a destination usually does is an anomaly even under the fixed threshold... */
  baselineFactor: number;
  /** ...where "usually" is an EWMA of the window rate with this half-life, frozen while the alert is up. */
  baselineHalfLifeMs: number;
  /** Clear when the rate falls to this share of the threshold (hysteresis). */
  clearRatio: number;
}

export const DEFAULT_ALERT_THRESHOLDS: Readonly<AlertThresholds> = Object.freeze({
  windowMs: 60_000,
  deferralRate: 0.2,
  bounceRate: 0.1,
  minSamples: 20,
  baselineFactor: 3,
  baselineHalfLifeMs: 3_600_000,
  clearRatio: 0.5,
});

/** Scopes tracked besides 'overall': a stream of new destinations cannot grow memory past this. */
export const MAX_ALERT_SCOPES = 500;
/** The window is kept as this many buckets (the window slides by windowMs / BUCKETS). */
const BUCKETS = 10;

type Outcome = 'delivered' | 'deferred' | 'bounced';

/**
 * One scope's window, as a ring of BUCKETS counters:
 *
 *   slot:   [0][1][2]...[9]     bucket n (= floor(t / bucketMs)) lives in slot n % BUCKETS;
 *   epoch:  n  n+1 ...          a slot whose epoch is older than now - BUCKETS + 1 is stale (zero).
 */
interface ScopeWindow {
  epoch: number[];
  delivered: number[];
  deferred: number[];
  bounced: number[];
  /** EWMA of the window rates (undefined until the window first had minSamples). */
  baseline: { deferred?: number; bounced?: number };
  lastEvalAt: number;
}

export interface AlertEngineOptions {
  thresholds?: Partial<AlertThresholds>;
  onRaise?: (a: Alert) => void;
  /** `at`: when it cleared (ms). */
  onClear?: (a: Alert, at: number) => void;
}

export class AlertEngine {
  readonly thresholds: Readonly<AlertThresholds>;
  readonly #o: AlertEngineOptions;
  readonly #bucketMs: number;
  readonly #scopes = new Map<string, ScopeWindow>();
  readonly #active = new Map<string, Alert>();
  /** Suspensions by scope: until when (ms). */
  readonly #suspended = new Map<string, number>();
  /** Alerts raised and cleared since start, for /metrics. */
  raised = 0;
  cleared = 0;

  constructor(o: AlertEngineOptions = {}) {
    this.thresholds = Object.freeze({ ...DEFAULT_ALERT_THRESHOLDS, ...o.thresholds });
    this.#o = o;
    this.#bucketMs = Math.max(1, Math.floor(this.thresholds.windowMs / BUCKETS));
  }

  /** One recipient outcome for `destination` (undefined: counted in 'overall' only) at `now`. */
  outcome(destination: string | undefined, kind: Outcome, now: number): void {
    this.#count('overall', kind, now);
    if (destination !== undefined && destination !== '') {
      const scope = `destination:${destination}`;
      if (this.#scopes.has(scope) || this.#scopes.size < MAX_ALERT_SCOPES + 1) this.#count(scope, kind, now);
    }
  }

  /** The shaper suspended `source` × `site` until `until` (ms): raised now, cleared at `until`. */
  suspended(site: string, source: string, until: number, now: number): void {
    const scope = `site:${site}/source:${source}`;
    if (!this.#suspended.has(scope) && this.#suspended.size >= MAX_ALERT_SCOPES) return;
    this.#suspended.set(scope, until);
    const id = `suspended:${scope}`;
    const a = this.#active.get(id);
    if (a) a.value = until;
    else this.#raise({ id, rule: 'suspended', scope, since: now, value: until, threshold: 0 });
  }

  /**
   * A condition of the node itself (the shared Redis down: main.ts) starts (`on`) or ends: one
   * alert while it lasts, however often it is told, cleared when it ends.
   */
  condition(rule: 'redis-down', scope: string, on: boolean, now: number): void {
    const id = `${rule}:${scope}`;
    if (on && !this.#active.has(id)) this.#raise({ id, rule, scope, since: now, value: 1, threshold: 0 });
    else if (!on) this.#clear(id, now);
  }

  /** Evaluate every rule at `now`: raise what crossed its threshold, clear what ended. */
  evaluate(now: number): void {
    for (const [scope, w] of this.#scopes) {
      const n = this.#sum(w, now);
      this.#rate('deferral-rate', scope, w, n.deferred, n.total, this.thresholds.deferralRate, 'deferred', now);
      this.#rate('bounce-rate', scope, w, n.bounced, n.total, this.thresholds.bounceRate, 'bounced', now);
      w.lastEvalAt = now;
      // A scope with nothing in its window and no alert up is forgotten (its baseline with it).
      if (n.total === 0 && scope !== 'overall' && !this.#active.has(`deferral-rate:${scope}`) && !this.#active.has(`bounce-rate:${scope}`)) this.#scopes.delete(scope);
    }
    for (const [scope, until] of this.#suspended) {
      if (now < until) continue;
      this.#suspended.delete(scope);
      this.#clear(`suspended:${scope}`, now);
    }
  }

  /** The alerts up now, oldest first. */
  get active(): Alert[] {
    return [...this.#active.values()].sort((a, b) => a.since - b.since || (a.id < b.id ? -1 : 1)).map((a) => ({ ...a }));
  }

  #rate(rule: AlertRule, scope: string, w: ScopeWindow, bad: number, total: number, fixed: number, key: 'deferred' | 'bounced', now: number): void {
    const t = this.thresholds;
    const id = `${rule}:${scope}`;
    const up = this.#active.get(id);
    const base = w.baseline[key];
    const threshold = Math.min(1, Math.max(fixed, base === undefined ? 0 : t.baselineFactor * base));
    if (total === 0) {
      if (up) this.#clear(id, now);
      return;
    }
    const rate = bad / total;
    if (up) {
      up.value = rate;
      if (total >= t.minSamples && rate <= up.threshold * t.clearRatio) this.#clear(id, now);
      return;
    }
    if (total < t.minSamples) return;
    if (rate > threshold) {
      this.#raise({ id, rule, scope, since: now, value: rate, threshold });
      return;
    }
    // The baseline learns only from normal windows: an anomaly must not become the norm.
    const dt = Math.max(0, now - (w.lastEvalAt || now));
    const alpha = base === undefined ? 1 : 1 - Math.pow(0.5, dt / t.baselineHalfLifeMs);
    w.baseline[key] = base === undefined ? rate : base + alpha * (rate - base);
  }

  #raise(a: Alert): void {
    this.#active.set(a.id, a);
    this.raised++;
    this.#o.onRaise?.({ ...a });
  }

  #clear(id: string, now: number): void {
    const a = this.#active.get(id);
    if (!a) return;
    this.#active.delete(id);
    this.cleared++;
    this.#o.onClear?.({ ...a }, now);
  }

  #count(scope: string, kind: Outcome, now: number): void {
    let w = this.#scopes.get(scope);
    if (!w) {
      const z = (): number[] => new Array<number>(BUCKETS).fill(0);
      w = { epoch: new Array<number>(BUCKETS).fill(-Infinity), delivered: z(), deferred: z(), bounced: z(), baseline: {}, lastEvalAt: 0 };
      this.#scopes.set(scope, w);
    }
    const n = Math.floor(now / this.#bucketMs);
    const i = n % BUCKETS;
    if (w.epoch[i] !== n) {
      w.epoch[i] = n;
      w.delivered[i] = 0;
      w.deferred[i] = 0;
      w.bounced[i] = 0;
    }
    w[kind][i]!++;
  }

  #sum(w: ScopeWindow, now: number): { deferred: number; bounced: number; total: number } {
    const n = Math.floor(now / this.#bucketMs);
    let delivered = 0;
    let deferred = 0;
    let bounced = 0;
    for (let i = 0; i < BUCKETS; i++) {
      const e = w.epoch[i]!;
      if (e <= n - BUCKETS || e > n) continue;
      delivered += w.delivered[i]!;
      deferred += w.deferred[i]!;
      bounced += w.bounced[i]!;
    }
    return { deferred, bounced, total: delivered + deferred + bounced };
  }
}
