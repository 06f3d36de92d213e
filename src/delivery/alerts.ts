// Anomaly alerts (docs/alerts.md): deferral and bounce rates of a sliding window against an
// exponentially weighted baseline (per destination, site, source and overall), TLS failures,
// queue growth and the age of the oldest queued message, circuit breakers open, the filter pool
// saturated, and shaping suspensions (a blocklist reply). Pure: fed outcomes, samples and state
// changes, evaluated on an injected clock; alert-monitor.ts wires it to the running node.
// An alert clears itself when its condition ends (with hysteresis, so it does not flap).

export type AlertRule =
  | 'deferral-rate'
  | 'bounce-rate'
  | 'suspended'
  | 'tls-failures'
  | 'queue-growth'
  | 'queue-age'
  | 'circuit-open'
  | 'filter-utilization'
  | 'filter-wait'
  | 'redis-down';

export interface Alert {
  /** `${rule}:${scope}`: stable while the condition lasts, the same for the next episode. */
  id: string;
  rule: AlertRule;
  /**
   * 'overall', 'destination:<key>', 'site:<site>', 'source:<source>', 'queue', 'filter' or, for
   * suspensions, 'site:<site>/source:<source>'.
   */
  scope: string;
  /** When it was raised (ms since the epoch). */
  since: number;
  /**
   * At the last evaluation: the rate (0-1) for rate rules and filter-utilization, the count for
   * tls-failures and queue-growth, ms for queue-age and filter-wait, 1 for circuit-open; for a
   * suspension, when it ends (ms).
   */
  value: number;
  /** What it had to reach (same unit as value); 0 for a suspension or an open circuit. */
  threshold: number;
}

export interface AlertThresholds {
  /** Length of the sliding window the rates and TLS failures are measured over. */
  windowMs: number;
  /** Raise when the window's deferral rate passes max(this, baselineFactor × baseline). */
  deferralRate: number;
  bounceRate: number;
  /** No rate alert on fewer recipient outcomes than this in the window (one deferral is not a trend). */
  minSamples: number;
  /** A rate well above what a scope usually does is an anomaly even under the fixed threshold... */
  baselineFactor: number;
  /** ...where "usually" is an EWMA of the window rate with this half-life, frozen while the alert is up. */
  baselineHalfLifeMs: number;
  /** Clear when the value falls to this share of the threshold (hysteresis). */
  clearRatio: number;
  /** TLS failures (STARTTLS refused under a required policy, failed handshakes) in the window; 0: off. */
  tlsFailures: number;
  /** Window over which queue growth is measured. */
  queueWindowMs: number;
  /** Raise when the queued count rose by this many messages over queueWindowMs, rising steadily; 0: off. */
  queueGrowth: number;
  /** Raise when the oldest queued (not held) message is this old (ms); 0: off. */
  queueAgeMs: number;
  /** Share (0-1) of the filter workers' time busy; 0: off... */
  filterUtilization: number;
  /** ...or the oldest message waiting for a filter worker this long (ms); 0: off... */
  filterWaitMs: number;
  /** ...at every evaluation for this long raises; below it for this long clears. */
  filterForMs: number;
}

export const DEFAULT_ALERT_THRESHOLDS: Readonly<AlertThresholds> = Object.freeze({
  windowMs: 60_000,
  deferralRate: 0.2,
  bounceRate: 0.1,
  minSamples: 20,
  baselineFactor: 3,
  baselineHalfLifeMs: 3_600_000,
  clearRatio: 0.5,
  tlsFailures: 10,
  queueWindowMs: 600_000,
  queueGrowth: 10_000,
  queueAgeMs: 86_400_000,
  filterUtilization: 0.9,
  filterWaitMs: 5000,
  filterForMs: 60_000,
});

/**
 * Scopes tracked per kind (destination, site, source) besides 'overall'; past it the scope
 * idle longest without an alert is evicted (its baseline with it), so a stream of new
 * destinations (a hostile or huge recipient set) cannot grow memory. Also bounds the open
 * circuits and suspensions alerted on.
 */
export const MAX_ALERT_SCOPES = 500;
/** The window is kept as this many buckets (the window slides by windowMs / BUCKETS). */
const BUCKETS = 10;
/** Queue samples kept per queue window (older ones are thinned out). */
const QUEUE_SAMPLES = 20;

type Outcome = 'delivered' | 'deferred' | 'bounced';
type ScopeKind = 'destination' | 'site' | 'source';

/**
 * One scope's window, as a ring of BUCKETS counters:
 *
 *   slot:   [0][1][2]...[9]     bucket n (= floor(t / bucketMs)) lives in slot n % BUCKETS;
 *   epoch:  n  n+1 ...          a slot whose epoch is older than now - BUCKETS + 1 is stale (zero).
 *
 * The scopes live in one Map in least-recently-counted order: a scope moves to the end the
 * first time it counts in a new bucket, so eviction takes the first idle entry of its kind.
 */
interface ScopeWindow {
  kind: ScopeKind | 'overall';
  epoch: number[];
  delivered: number[];
  deferred: number[];
  bounced: number[];
  tls: number[];
  /** EWMA of the window rates (undefined until the window first had minSamples). */
  baseline: { deferred?: number; bounced?: number };
  lastEvalAt: number;
}

/** Where an outcome happened, besides its destination: the shaping site and egress source. */
export interface OutcomePlace {
  /** A site the shaping file names ('' or absent: none). */
  site?: string;
  /** The egress source's name ('default' outside every pool). */
  source?: string;
  /** The failure was a TLS failure (bounce category 'tls'). */
  tls?: boolean;
}

/** A sample of the filter pool: utilization since the previous sample and the oldest wait now. */
export interface FilterSample {
  utilization: number;
  waitMs: number;
}

export interface AlertEngineOptions {
  thresholds?: Partial<AlertThresholds>;
  onRaise?: (a: Alert) => void;
  /** `at`: when it cleared (ms). */
  onClear?: (a: Alert, at: number) => void;
}

export class AlertEngine {
  #t: Readonly<AlertThresholds>;
  readonly #o: AlertEngineOptions;
  #bucketMs: number;
  /** When the windows were last started afresh (a new window length): empty windows clear nothing for one window. */
  #resetAt = -Infinity;
  readonly #scopes = new Map<string, ScopeWindow>();
  readonly #kinds: Record<ScopeKind, number> = { destination: 0, site: 0, source: 0 };
  readonly #active = new Map<string, Alert>();
  /** Suspensions by scope: until when (ms). */
  readonly #suspended = new Map<string, number>();
  /** Destinations whose circuit is open (or half-open) now. */
  readonly #circuits = new Set<string>();
  /** Queued-count samples, oldest first, at most QUEUE_SAMPLES + 1 per queue window. */
  #queue: Array<{ t: number; n: number }> = [];
  #oldestAt: number | null = null;
  /** For the filter rules: since when the condition has held, and since when it has not. */
  readonly #held = new Map<string, { on: number | null; off: number | null }>();
  /** Alerts raised and cleared since start, for /metrics. */
  raised = 0;
  cleared = 0;

  constructor(o: AlertEngineOptions = {}) {
    this.#o = o;
    this.#t = Object.freeze({ ...DEFAULT_ALERT_THRESHOLDS, ...o.thresholds });
    this.#bucketMs = bucketMsOf(this.#t.windowMs);
  }

  get thresholds(): Readonly<AlertThresholds> {
    return this.#t;
  }

  /**
   * New thresholds (the shaping file was re-read): alerts up stay and are judged by the new
   * values at the next evaluation. A new window length starts the windows afresh (their
   * buckets no longer line up); baselines are kept.
   */
  setThresholds(t: Partial<AlertThresholds>, now: number): void {
    const next = Object.freeze({ ...DEFAULT_ALERT_THRESHOLDS, ...t });
    if (next.windowMs !== this.#t.windowMs) {
      this.#bucketMs = bucketMsOf(next.windowMs);
      this.#resetAt = now;
      for (const w of this.#scopes.values()) w.epoch.fill(-Infinity);
    }
    this.#t = next;
  }

  /** One recipient outcome for `destination` (undefined: not counted per destination) at `now`. */
  outcome(destination: string | undefined, kind: Outcome, now: number, place: OutcomePlace = {}): void {
    const tls = place.tls === true && kind !== 'delivered';
    this.#count('overall', 'overall', kind, tls, now);
    if (destination !== undefined && destination !== '') this.#count(`destination:${destination}`, 'destination', kind, tls, now);
    if (place.site !== undefined && place.site !== '') this.#count(`site:${place.site}`, 'site', kind, tls, now);
    if (place.source !== undefined && place.source !== '') this.#count(`source:${place.source}`, 'source', kind, false, now);
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

  /** A destination's circuit breaker opened (`open`) or closed again. */
  circuit(destination: string, open: boolean, now: number): void {
    const scope = `destination:${destination}`;
    const id = `circuit-open:${scope}`;
    if (!open) {
      this.#circuits.delete(destination);
      this.#clear(id, now);
      return;
    }
    if (this.#circuits.has(destination) || this.#circuits.size >= MAX_ALERT_SCOPES) return;
    this.#circuits.add(destination);
    this.#raise({ id, rule: 'circuit-open', scope, since: now, value: 1, threshold: 0 });
  }

  /** The last queue sample: messages queued (not held) and the oldest one's arrival (null: none). */
  get queueSample(): { queued: number; oldestAt: number | null } | null {
    const last = this.#queue[this.#queue.length - 1];
    return last === undefined ? null : { queued: last.n, oldestAt: this.#oldestAt };
  }

  /** Destinations whose circuit is open now (as far as the alerts track them: at most MAX_ALERT_SCOPES). */
  get openCircuits(): number {
    return this.#circuits.size;
  }

  /** A sample of the queue: messages queued (not held) and the arrival time of the oldest (null: empty or unknown). */
  queue(queued: number, oldestAt: number | null, now: number): void {
    const q = this.#queue;
    const step = this.#t.queueWindowMs / QUEUE_SAMPLES;
    const last = q[q.length - 1];
    // Thinned to one sample per step: the last one of a step stands for it.
    if (last !== undefined && q.length > 1 && now - q[q.length - 2]!.t < step) {
      last.t = now;
      last.n = queued;
    } else q.push({ t: now, n: queued });
    while (q.length > 2 && q[1]!.t <= now - this.#t.queueWindowMs) q.shift();
    this.#oldestAt = oldestAt;
  }

  /** A sample of the filter pool (null: no filters). */
  filter(s: FilterSample | null, now: number): void {
    const t = this.#t;
    this.#sustained('filter-utilization', s !== null && t.filterUtilization > 0 && s.utilization >= t.filterUtilization, s?.utilization ?? 0, t.filterUtilization, now);
    this.#sustained('filter-wait', s !== null && t.filterWaitMs > 0 && s.waitMs >= t.filterWaitMs, s?.waitMs ?? 0, t.filterWaitMs, now);
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
    const t = this.#t;
    for (const [scope, w] of this.#scopes) {
      const n = this.#sum(w, now);
      this.#rate('deferral-rate', scope, w, n.deferred, n.total, t.deferralRate, 'deferred', now);
      this.#rate('bounce-rate', scope, w, n.bounced, n.total, t.bounceRate, 'bounced', now);
      if (w.kind !== 'source') this.#level('tls-failures', scope, n.tls, t.tlsFailures, now);
      w.lastEvalAt = now;
      // A scope with nothing in its window and no alert up is forgotten (its baseline with it).
      if (n.total === 0 && w.kind !== 'overall' && !this.#alerted(scope)) this.#drop(scope, w);
    }
    for (const [scope, until] of this.#suspended) {
      if (now < until) continue;
      this.#suspended.delete(scope);
      this.#clear(`suspended:${scope}`, now);
    }
    this.#queueRules(now);
  }

  /** The alerts up now, oldest first. */
  get active(): Alert[] {
    return [...this.#active.values()].sort((a, b) => a.since - b.since || (a.id < b.id ? -1 : 1)).map((a) => ({ ...a }));
  }

  /** Scopes with a window now (for tests of the bound). */
  get scopes(): number {
    return this.#scopes.size;
  }

  #queueRules(now: number): void {
    const t = this.#t;
    const q = this.#queue;
    // Growth: the last count over the window's lowest, and steadily: the count rose in at least
    // half the steps (a burst that is being drained, or a count that wobbles, is not growth).
    let growth = 0;
    let steady = false;
    if (q.length >= 3 && q[q.length - 1]!.t - q[0]!.t >= t.queueWindowMs * 0.8) {
      let min = Infinity;
      let rises = 0;
      for (let i = 0; i < q.length; i++) {
        min = Math.min(min, q[i]!.n);
        if (i > 0 && q[i]!.n > q[i - 1]!.n) rises++;
      }
      growth = q[q.length - 1]!.n - min;
      steady = rises * 2 >= q.length - 1;
    } else if (q.length > 0) {
      growth = q[q.length - 1]!.n - Math.min(...q.map((s) => s.n));
    }
    const gid = 'queue-growth:queue';
    const gUp = this.#active.get(gid);
    if (gUp) {
      gUp.value = growth;
      if (t.queueGrowth === 0 || growth <= gUp.threshold * t.clearRatio) this.#clear(gid, now);
    } else if (t.queueGrowth > 0 && steady && growth >= t.queueGrowth) {
      this.#raise({ id: gid, rule: 'queue-growth', scope: 'queue', since: now, value: growth, threshold: t.queueGrowth });
    }
    const age = this.#oldestAt === null ? 0 : Math.max(0, now - this.#oldestAt);
    this.#level('queue-age', 'queue', age, t.queueAgeMs, now);
  }

  /** A level rule: raised at `value >= threshold` (threshold 0: off), cleared at or below threshold × clearRatio. */
  #level(rule: AlertRule, scope: string, value: number, threshold: number, now: number): void {
    const id = `${rule}:${scope}`;
    const up = this.#active.get(id);
    if (up) {
      up.value = value;
      if (threshold === 0 || value <= up.threshold * this.#t.clearRatio) this.#clear(id, now);
    } else if (threshold > 0 && value >= threshold) this.#raise({ id, rule, scope, since: now, value, threshold });
  }

  /** A rule whose condition must hold at every sample for filterForMs to raise, and fail as long to clear. */
  #sustained(rule: AlertRule, on: boolean, value: number, threshold: number, now: number): void {
    const id = `${rule}:filter`;
    let h = this.#held.get(id);
    if (!h) this.#held.set(id, (h = { on: null, off: null }));
    if (on) {
      h.off = null;
      h.on ??= now;
    } else {
      h.on = null;
      h.off ??= now;
    }
    const up = this.#active.get(id);
    if (up) {
      up.value = value;
      if (h.off !== null && (now - h.off >= this.#t.filterForMs || threshold === 0)) this.#clear(id, now);
    } else if (h.on !== null && now - h.on >= this.#t.filterForMs) {
      this.#raise({ id, rule, scope: 'filter', since: now, value, threshold });
    }
  }

  #rate(rule: AlertRule, scope: string, w: ScopeWindow, bad: number, total: number, fixed: number, key: 'deferred' | 'bounced', now: number): void {
    const t = this.#t;
    const id = `${rule}:${scope}`;
    const up = this.#active.get(id);
    const base = w.baseline[key];
    const threshold = Math.min(1, Math.max(fixed, base === undefined ? 0 : t.baselineFactor * base));
    if (total === 0) {
      // Right after a new window length the windows are empty by construction, not quiet.
      if (up && now - this.#resetAt >= t.windowMs) this.#clear(id, now);
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

  #alerted(scope: string): boolean {
    return this.#active.has(`deferral-rate:${scope}`) || this.#active.has(`bounce-rate:${scope}`) || this.#active.has(`tls-failures:${scope}`);
  }

  #drop(scope: string, w: ScopeWindow): void {
    this.#scopes.delete(scope);
    if (w.kind !== 'overall') this.#kinds[w.kind]--;
  }

  #count(scope: string, kind: ScopeKind | 'overall', outcome: Outcome, tls: boolean, now: number): void {
    let w = this.#scopes.get(scope);
    if (!w) {
      if (kind !== 'overall' && this.#kinds[kind] >= MAX_ALERT_SCOPES && !this.#evict(kind)) return;
      const z = (): number[] => new Array<number>(BUCKETS).fill(0);
      w = { kind, epoch: new Array<number>(BUCKETS).fill(-Infinity), delivered: z(), deferred: z(), bounced: z(), tls: z(), baseline: {}, lastEvalAt: 0 };
      this.#scopes.set(scope, w);
      if (kind !== 'overall') this.#kinds[kind]++;
    }
    const n = Math.floor(now / this.#bucketMs);
    const i = n % BUCKETS;
    if (w.epoch[i] !== n) {
      w.epoch[i] = n;
      w.delivered[i] = 0;
      w.deferred[i] = 0;
      w.bounced[i] = 0;
      w.tls[i] = 0;
      // Once per scope and bucket, not per outcome: the most recently counted go last.
      this.#scopes.delete(scope);
      this.#scopes.set(scope, w);
    }
    w[outcome][i]!++;
    if (tls) w.tls[i]!++;
  }

  /** Evict the least recently counted scope of `kind` with no alert up; false when every one has an alert. */
  #evict(kind: ScopeKind): boolean {
    for (const [scope, w] of this.#scopes) {
      if (w.kind !== kind || this.#alerted(scope)) continue;
      this.#drop(scope, w);
      return true;
    }
    return false;
  }

  #sum(w: ScopeWindow, now: number): { deferred: number; bounced: number; tls: number; total: number } {
    const n = Math.floor(now / this.#bucketMs);
    let delivered = 0;
    let deferred = 0;
    let bounced = 0;
    let tls = 0;
    for (let i = 0; i < BUCKETS; i++) {
      const e = w.epoch[i]!;
      if (e <= n - BUCKETS || e > n) continue;
      delivered += w.delivered[i]!;
      deferred += w.deferred[i]!;
      bounced += w.bounced[i]!;
      tls += w.tls[i]!;
    }
    return { deferred, bounced, tls, total: delivered + deferred + bounced };
  }
}

function bucketMsOf(windowMs: number): number {
  return Math.max(1, Math.floor(windowMs / BUCKETS));
}
