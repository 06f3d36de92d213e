// Builds the delivery side from the configuration: routes, smarthost and MX routing, the
// transports (SMTP/LMTP pools, Maildir, webhook), throttles and circuit breakers, the DSN
// bounce sink, and the Scheduler that drives them. Parsing happens here, once, at start-up:
// a bad POSTERN_ROUTES / POSTERN_SMARTHOST / POSTERN_DEST_RATE / POSTERN_RETRY_SCHEDULE is a
// ConfigError naming the variable.
import { Resolver } from 'node:dns/promises';
import type { Config } from '../config/schema.js';
import { ConfigError } from '../config/load.js';
import type { Queue } from '../queue/store.js';
import type { Logger } from '../log/logger.js';
import { parseRoutes, parseSmarthost, matchRoute, normalizeDomain, EMPTY_ROUTES, type RouteTable } from './routes.js';
import { MxResolver, destinationFor, type DnsResolver } from './mx.js';
import { parseRate, ThrottleMap } from './throttle.js';
import { CircuitBreakerMap } from './circuit-breaker.js';
import { parseRetrySchedule, nextRetryAt, DEFAULT_RETRY_SCHEDULE_MS, type RetrySchedule } from './backoff.js';
import { SmtpTransport, type SmtpTransportOptions } from './smtp-transport.js';
import { AffinityTransport } from './affinity-transport.js';
import { MaildirTransport } from './maildir-transport.js';
import { WebhookTransport } from './webhook-transport.js';
import { enqueueDsn } from './dsn.js';
import { Scheduler, type BounceSink, type DestinationGate, type RouteResult } from './scheduler.js';
import type { HostPort } from './types.js';
import type { MailEvent } from '../queue/events.js';
import { redactUrls } from '../lib/redact-url.js';

export interface DeliveryOptions {
  /** Event webhooks: one event per recipient outcome. */
  onEvent?: (e: MailEvent) => void;
  /** Injected DNS (tests); default node's resolver. Only used with POSTERN_DELIVERY=mx. */
  dns?: DnsResolver;
  pollIntervalMs?: number;
}

interface Parsed {
  routes: RouteTable;
  smarthost: readonly HostPort[] | null;
  rate: number | null;
  retry: RetrySchedule;
}

function parseDeliveryConfig(c: Readonly<Config>): Parsed {
  const problems: string[] = [];
  const bad = (env: string, value: string, why: string) => problems.push(`${env}=${JSON.stringify(value)} is invalid: ${why}`);
  let routes = EMPTY_ROUTES;
  if (c.routes.trim() !== '') {
    const r = parseRoutes(c.routes);
    if ('error' in r) bad('POSTERN_ROUTES', redactUrls(c.routes), redactUrls(r.error));
    else routes = r;
  }
  let smarthost: readonly HostPort[] | null = null;
  if (c.smarthost.trim() !== '') {
    const s = parseSmarthost(c.smarthost);
    if (s !== null && 'error' in s) bad('POSTERN_SMARTHOST', c.smarthost, s.error);
    else smarthost = s;
  }
  let rate: number | null = null;
  if (c.destRate.trim() !== '') {
    const r = parseRate(c.destRate);
    if (typeof r !== 'number') bad('POSTERN_DEST_RATE', c.destRate, r.error);
    else rate = r;
  }
  let retry: RetrySchedule = DEFAULT_RETRY_SCHEDULE_MS;
  if (c.retrySchedule.trim() !== '') {
    const r = parseRetrySchedule(c.retrySchedule);
    if ('error' in r) bad('POSTERN_RETRY_SCHEDULE', c.retrySchedule, r.error);
    else retry = r;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { routes, smarthost, rate, retry };
}

/** Validate the delivery settings without starting anything (for `postern config`). */
export function checkDeliveryConfig(c: Readonly<Config>): void {
  parseDeliveryConfig(c);
}

export function createDelivery(c: Readonly<Config>, queue: Queue, log: Logger, opts: DeliveryOptions = {}): Scheduler {
  const p = parseDeliveryConfig(c);
  const mx = new MxResolver(opts.dns ?? (new Resolver({ timeout: 5000, tries: 2 }) as unknown as DnsResolver));
  const routing = { routes: p.routes, smarthost: p.smarthost, tlsPolicy: c.tlsPolicy, mx };
  const route = async (domain: string): Promise<RouteResult> => {
    // POSTERN_DELIVERY=routes: only configured next hops, never the Internet by DNS.
    if (c.delivery === 'routes' && !matchRoute(p.routes, normalizeDomain(domain)) && !(p.smarthost && p.smarthost.length > 0)) {
      return { kind: 'defer', reply: { text: `no route for ${domain} (POSTERN_DELIVERY=routes: add it to POSTERN_ROUTES, or set POSTERN_SMARTHOST or POSTERN_DELIVERY=mx)`, enhanced: '4.4.0', transient: true, command: 'ROUTE' } };
    }
    const d = await destinationFor(domain, routing);
    return d.kind === 'defer' ? { kind: 'defer', reply: d.reply } : d;
  };
  const smtpOptions: SmtpTransportOptions = {
    heloName: c.hostname,
    maxConnectionsPerDestination: c.destMaxConnections,
    maxMessagesPerConnection: c.destMaxMessagesPerConnection,
    idleTimeoutMs: c.destIdleTimeoutMs,
  };
  // POSTERN_DELIVERY_THREADS > 0: each destination's pool lives in one worker thread (by hash).
  const smtp = c.deliveryThreads > 0 ? new AffinityTransport({ threads: c.deliveryThreads, smtp: smtpOptions }) : new SmtpTransport(smtpOptions);
  const throttles = p.rate !== null ? new ThrottleMap(p.rate) : null;
  const breakers = new CircuitBreakerMap();
  const gate: DestinationGate = {
    delayMs: (key, now) => (throttles ? throttles.take(key, now) : 0),
    canAttempt: (key, now) => breakers.canAttempt(key, now),
    retryAt: (key) => breakers.retryAt(key),
    record: (key, outcome, now) => {
      if (outcome === 'connection-failure') breakers.recordFailure(key, now);
      else if (outcome === 'ok') breakers.recordSuccess(key);
    },
  };
  const bounces: BounceSink = { bounce: (message, items, originalBody) => enqueueDsn(queue, c.hostname, message, items, originalBody) };
  return new Scheduler({
    queue,
    log,
    route,
    transports: { smtp, lmtp: smtp, maildir: new MaildirTransport({ hostname: c.hostname }), webhook: new WebhookTransport() },
    gate,
    bounces,
    retryAt: (attempts, now) => nextRetryAt(attempts, now, p.retry),
    maxQueueLifetimeMs: c.maxQueueLifetimeMs,
    maxConcurrency: c.deliveryConcurrency,
    leaseMs: c.queueLeaseMs,
    isSuppressed: (address) => queue.suppressions.has(address),
    ...(opts.pollIntervalMs !== undefined ? { pollIntervalMs: opts.pollIntervalMs } : {}),
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    // [dashboard] Pool counts for /v1/stats (the in-thread SMTP transport only).
    ...(smtp instanceof SmtpTransport ? { poolCounts: () => smtp.counts() } : {}),
  });
}
