// Wires the alert engine (alerts.ts) to the running node: it reads the delivery events (recipient
// outcomes, shaping suspensions), evaluates on a timer, and turns each raise and clear into a log
// line and an alert.raised / alert.cleared event for the event webhook. /metrics and /v1/alerts
// read `engine.active`.
import type { Config } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { MailEvent } from '../queue/events.js';
import type { ShapingAlerts } from '../config/shaping.js';
import { AlertEngine, type Alert, type AlertThresholds } from './alerts.js';

export interface AlertMonitor {
  readonly engine: AlertEngine;
  /** Feed one delivery event (the scheduler's and the shaper's onEvent). */
  observe(e: MailEvent): void;
  start(): void;
  stop(): void;
}

/** The POSTERN_ALERT_* settings, overridden by the shaping file's [alerts] table (read at start). */
export function alertThresholds(c: Readonly<Config>, file?: Readonly<ShapingAlerts>): Partial<AlertThresholds> {
  return { windowMs: c.alertWindowMs, deferralRate: c.alertDeferralPercent / 100, bounceRate: c.alertBouncePercent / 100, minSamples: c.alertMinRecipients, ...file };
}

function alertEvent(type: 'alert.raised' | 'alert.cleared', a: Alert, at: number): MailEvent {
  return { type, time: new Date(at).toISOString(), alert: a.id, rule: a.rule, scope: a.scope, since: new Date(a.since).toISOString(), value: a.value, threshold: a.threshold };
}

export function createAlertMonitor(c: Readonly<Config>, log: Logger, o: { file?: Readonly<ShapingAlerts>; emit?: (e: MailEvent) => void; now?: () => number } = {}): AlertMonitor {
  const { emit, now = Date.now } = o;
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
  return {
    engine,
    observe(e) {
      if (e.async === true) return; // a DSN that came back later says nothing about the next hop now
      if (e.type === 'delivered' || e.type === 'deferred' || e.type === 'bounced') engine.outcome(e.destination, e.type, now());
      else if (e.type === 'shaping.suspended' && e.site !== undefined && e.until !== undefined) {
        const until = Date.parse(e.until);
        if (Number.isFinite(until)) engine.suspended(e.site, e.egress ?? '', until, now());
      }
    },
    start() {
      // Ten evaluations per window: an alert comes up within a tenth of a window of the change.
      timer ??= setInterval(() => engine.evaluate(now()), Math.max(100, Math.floor(engine.thresholds.windowMs / 10))).unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = null;
    },
  };
}
