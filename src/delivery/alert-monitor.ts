// Wires the alert engine (alerts.ts) to the running node: it reads the delivery events (recipient
// outcomes with their site and source, TLS failures, shaping suspensions) and circuit-breaker
// changes, samples the queue and the filter pool on a timer before each evaluation, takes new
// thresholds when the shaping file is re-read, and turns each raise and clear into a log line
// and an alert.raised / alert.cleared event. /metrics and /v1/alerts read `engine.active`.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { MailEvent } from '../queue/events.js';
import type { ShapingAlerts } from '../config/shaping.js';
import { AlertEngine, type Alert, type AlertThresholds } from './alerts.js';
import { DEFAULT_SOURCE } from './shaping/shaper.js';

/** What the queue tells the monitor at each evaluation (Queue.backlog). */
export interface QueueSample {
  /** Messages queued and not held. */
  queued: number;
  /** Arrival time (ms) of the oldest queued message that is not held; null: none (or not found within the scan bound). */
  oldestAt: number | null;
}

/** What the filter pool tells the monitor (FilterPool.load). */
export interface FilterLoad {
  workers: number;
  /** Worker-milliseconds with a batch, since start (an integral: utilization = its change / (elapsed × workers)). */
  busyWorkerMs: number;
  /** How long the oldest message waiting for a worker has waited (0: none waits). */
  oldestWaitMs: number;
}

export interface AlertProbes {
  queue?: () => QueueSample | null;
  filter?: () => FilterLoad | null;
}

export interface AlertMonitor {
  readonly engine: AlertEngine;
  /** Feed one delivery event (the scheduler's and the shaper's onEvent). */
  observe(e: MailEvent): void;
  /** A destination's circuit breaker opened or closed (engine.ts's breaker hook). */
  circuit(destination: string, open: boolean): void;
  /** The shaping file was re-read: its [alerts] table (absent: the settings alone) replaces the thresholds. */
  reload(file: Readonly<ShapingAlerts> | undefined): void;
  /** Sample the probes and evaluate now (the timer does it ten times per window). */
  tick(): void;
  start(): void;
  stop(): void;
}

/** The POSTERN_ALERT_* settings, overridden by the shaping file's [alerts] table. */
export function alertThresholds(c: Readonly<Config>, file?: Readonly<ShapingAlerts>): Partial<AlertThresholds> {
  return {
    windowMs: c.alertWindowMs,
    deferralRate: c.alertDeferralPercent / 100,
    bounceRate: c.alertBouncePercent / 100,
    minSamples: c.alertMinRecipients,
    tlsFailures: c.alertTlsFailures,
    queueGrowth: c.alertQueueGrowth,
    queueAgeMs: c.alertQueueAgeMs,
    filterUtilization: c.alertFilterUtilizationPercent / 100,
    filterWaitMs: c.alertFilterWaitMs,
    ...file,
  };
}

function alertEvent(type: 'alert.raised' | 'alert.cleared', a: Alert, at: number): MailEvent {
  return { type, time: new Date(at).toISOString(), alert: a.id, rule: a.rule, scope: a.scope, since: new Date(a.since).toISOString(), value: a.value, threshold: a.threshold };
}

/** The evaluation period: ten per window (rates) or queue window, whichever is shorter, and at least four per filter duration. */
function tickMs(t: Readonly<AlertThresholds>): number {
  return Math.max(100, Math.floor(Math.min(t.windowMs / 10, t.queueWindowMs / 10, t.filterForMs / 4)));
}

export function createAlertMonitor(c: Readonly<Config>, log: Logger, o: { file?: Readonly<ShapingAlerts>; emit?: (e: MailEvent) => void; now?: () => number; probes?: AlertProbes } = {}): AlertMonitor {
  const { emit, now = Date.now, probes = {} } = o;
  const engine = new AlertEngine({
    thresholds: alertThresholds(c, o.file),
    onRaise: (a) => {
      log.warn({ alert: a.id, rule: a.rule, scope: a.scope, value: a.value, threshold: a.threshold }, 'alert raised');
      emit?.(alertEvent('alert.raised', a, a.since));
    },
    onClear: (a, at) => {
      log.info({ alert: a.id, rule: a.rule, scope: a.scope, value: a.value, threshold: a.threshold, lastedMs: at - a.since }, 'alert cleared');
      emit?.(alertEvent('alert.cleared', a, at));
    },
  });
  let timer: NodeJS.Timeout | null = null;
  let lastFilter: { at: number; busyWorkerMs: number } | null = null;
  const tick = (): void => {
    const t = now();
    try {
      const q = probes.queue?.() ?? null;
      if (q) engine.queue(q.queued, q.oldestAt, t);
    } catch (err) {
      log.debug({ err }, 'alerts: queue not sampled'); // closing: the next tick tries again
    }
    const f = probes.filter?.() ?? null;
    if (f && f.workers > 0) {
      const prev = lastFilter;
      lastFilter = { at: t, busyWorkerMs: f.busyWorkerMs };
      if (prev && t > prev.at) engine.filter({ utilization: Math.min(1, (f.busyWorkerMs - prev.busyWorkerMs) / ((t - prev.at) * f.workers)), waitMs: f.oldestWaitMs }, t);
    } else if (probes.filter) engine.filter(null, t);
    engine.evaluate(t);
  };
  const startTimer = (): void => {
    timer = setInterval(tick, tickMs(engine.thresholds)).unref();
  };
  return {
    engine,
    observe(e) {
      if (e.async === true) return; // a DSN that came back later says nothing about the next hop now
      // Deferred untried (the shaper pacing after a throttle, an open circuit): our own doing, not
      // the next hop's answer; counted, it would keep a deferral-rate alert up while back-off recovers.
      if (e.tried === false) return;
      if (e.type === 'delivered' || e.type === 'deferred' || e.type === 'bounced') {
        // Per source only for the sources the file names: 'default' (mail outside every pool,
        // all of it on a node without pools) would repeat 'overall' alert for alert.
        const source = e.egress !== undefined && e.egress !== DEFAULT_SOURCE ? e.egress : undefined;
        engine.outcome(e.destination, e.type, now(), { ...(e.site !== undefined ? { site: e.site } : {}), ...(source !== undefined ? { source } : {}), tls: e.category === 'tls' });
      } else if (e.type === 'shaping.suspended' && e.site !== undefined && e.until !== undefined) {
        const until = Date.parse(e.until);
        if (Number.isFinite(until)) engine.suspended(e.site, e.egress ?? '', until, now());
      }
    },
    circuit(destination, open) {
      engine.circuit(destination, open, now());
    },
    reload(file) {
      const before = engine.thresholds;
      engine.setThresholds(alertThresholds(c, file), now());
      const after = engine.thresholds;
      const changed = (Object.keys(after) as (keyof AlertThresholds)[]).filter((k) => after[k] !== before[k]);
      if (changed.length === 0) return;
      log.info({ changed: Object.fromEntries(changed.map((k) => [k, after[k]])) }, 'alert thresholds reloaded');
      if (timer !== null && tickMs(before) !== tickMs(after)) {
        clearInterval(timer);
        startTimer();
      }
    },
    tick,
    start() {
      if (timer === null) startTimer();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
