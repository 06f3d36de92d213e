// Builds the delivery side from the configuration: routes, smarthost and MX routing, the
// transports (SMTP/LMTP pools, Maildir, webhook, pipe), the shaper (rates, connection limits and
// adaptive back-off per source × site, the shaping file re-read when it changes), circuit
// breakers and the recovery of destinations that come back, the DSN bounce sink, the bounce
// classification, VERP and the bounce processor (docs/bounces.md), and the Scheduler that
// drives them. The settings arrive parsed and checked
// (config/load.ts): routes, smarthost, rate and retry schedule are read, never re-parsed.
import { Resolver } from 'node:dns/promises';
import type { Config } from '../config/schema.js';
import type { Queue, MessageRecord } from '../queue/store.js';
import type { Logger } from '../log/logger.js';
import { formatHostPort, matchRoute, IMPLICIT_TLS_PORT } from '../config/routes.js';
import { normalizeDomain } from '../lib/domain-name.js';
import { MxResolver, destinationFor, type DnsResolver } from './mx.js';
import { AddressPolicy } from './address-policy.js';
import { replyRecord } from './types.js';
import { Shaper, type SharedLimits, type SharedWarmup } from './shaping/shaper.js';
import { readShaping, ShapingFileWatcher, EMPTY_SHAPING, type ShapingFile } from '../config/shaping.js';
import { breakerGate, CircuitBreakerMap, type CircuitChange } from './circuit-breaker.js';
import { shapingView } from './shaping/shaping-view.js';
import { DestinationRecovery } from './destination-recovery.js';
import { nextRetryAt } from './backoff.js';
import { SmtpTransport, type SmtpTransportOptions, type TlsFallbackEvent } from './smtp-transport.js';
import { AffinityTransport } from './affinity-transport.js';
import { MaildirTransport } from './maildir-transport.js';
import { WebhookTransport } from './webhook-transport.js';
import { PipeTransport } from './pipe-transport.js';
import { checkPipeRoutes, type PipeIdentity } from '../config/pipe-routes.js';
import { ConfigError } from '../config/load.js';
import { enqueueDsn } from './dsn.js';
import { Scheduler, type BounceSink, type RouteResult } from './scheduler.js';
import type { MailEvent } from '../queue/events.js';
import type { BounceRules } from '../lib/bounce-class.js';
import type { VerpKey } from '../protocol/verp.js';
import { createBounceSetup } from './bounce-setup.js';
import { join } from 'node:path';
import { MtaSts, type MtaStsOptions, type TxtResolver } from './mta-sts.js';
import { applyTlsPolicy, type TlsPolicies } from './tls-policy.js';
import { DaneResolver } from './dane.js';
import type { TlsOutcomeSink } from './tls-outcome.js';
import type { Transport } from './types.js';

export interface DeliveryOptions {
  /** Event webhooks: one event per recipient outcome. */
  onEvent?: (e: MailEvent) => void;
  /** Injected DNS (tests); default node's resolver. Only used with POSTERN_DELIVERY=mx. */
  dns?: DnsResolver;
  pollIntervalMs?: number;
  /** The node's own SMTP listening ports, once bound: a route or smarthost to one of them on this host is a loop. */
  selfPorts?: () => readonly number[];
  /** May a maildir route create the missing mailbox of this address? (main.ts: the recipient map or POSTERN_MAILDIR_CREATE.) */
  maildirMayCreate?: (address: string) => boolean;
  /** The bounce rules (config/resources.ts); without them every failure is "other". */
  bounceRules?: BounceRules;
  /** The VERP domain and key (POSTERN_VERP; main.ts reads the key). */
  verp?: VerpKey;
  /** The shaping file as loadResources read it (read again here when absent). */
  shaping?: ShapingFile | null;
  /** How often the shaping file is looked at for changes (default 2 s). */
  shapingPollMs?: number;
  /** Cluster-wide limits (main.ts: cluster/cluster-limiter.ts with POSTERN_REDIS_URL). */
  shared?: SharedLimits;
  /** Cluster-wide warm-up day counts (main.ts: cluster/shared-warmup.ts). */
  sharedWarmup?: SharedWarmup;
  /** Suppressions of the other nodes (main.ts: cluster/shared-suppressions.ts): asked once per message. */
  sharedSuppressed?: (addresses: readonly string[]) => Promise<ReadonlySet<string>>;
  /** Told each new version of the shaping file once it applies (main.ts: the pools X-Postern-Pool may name, the alerts' [alerts] table). */
  onShapingReload?: (file: ShapingFile) => void;
  /** A destination's circuit breaker opened or closed (the alerts). */
  onCircuit?: CircuitChange;
  /** The uid/gid of each pipe route as loadResources resolved them (resolved here when absent). */
  pipeIdentities?: ReadonlyMap<string, PipeIdentity>;
  /** Each outbound TLS attempt to a domain with a TLS policy or none found (the TLS reporter). */
  tlsOutcomes?: TlsOutcomeSink;
  /** Certificates (PEM) trusted besides Node's roots when verifying next hops (embedders, tests; operators use NODE_EXTRA_CA_CERTS). */
  trustedCa?: readonly string[];
  /** MTA-STS fetch settings (tests: a loopback origin, resolveHost, their CA). */
  mtaSts?: Pick<MtaStsOptions, 'origin' | 'resolveHost' | 'ca' | 'fetchTimeoutMs' | 'txtRecheckMs' | 'negativeTtlMs'>;
}

export function createDelivery(c: Readonly<Config>, queue: Queue, log: Logger, opts: DeliveryOptions = {}): Scheduler {
  const resolver = opts.dns ?? (new Resolver({ timeout: 5000, tries: 2 }) as unknown as DnsResolver);
  const addressPolicy = new AddressPolicy({ allowPrivate: c.deliveryAllowPrivate });
  const mx = new MxResolver(resolver, { policy: addressPolicy });
  // A smarthost on port 465 is implicit TLS (RFC 8314); config/load.ts refused 465 mixed with other ports.
  const smarthostImplicit = c.smarthost !== null && c.smarthost.every((h) => h.port === IMPLICIT_TLS_PORT);
  const routing = { routes: c.routes, smarthost: c.smarthost, tlsPolicy: c.tlsPolicy, mx, ...(c.smarthostAuthFile !== '' ? { smarthostAuth: c.smarthostAuthFile } : {}), ...(smarthostImplicit ? { smarthostTlsPolicy: 'implicit' as const } : {}) };
  // MTA-STS (RFC 8461) for MX deliveries; an injected resolver without TXT lookups (tests) has none.
  const txt = resolver as Partial<TxtResolver>;
  const sts = c.delivery === 'mx' && c.mtaSts && typeof txt.resolveTxt === 'function'
    ? new MtaSts({
        dns: txt as TxtResolver,
        policy: addressPolicy,
        cacheFile: join(c.dataDir, 'mta-sts-policies.json'),
        ...opts.mtaSts,
        onFailure: (domain, failure, detail) => {
          log.warn({ domain, failure, detail }, 'MTA-STS policy not fetched');
          opts.tlsOutcomes?.record({ policyDomain: domain, policy: { type: 'sts' }, mxHost: '', result: { failure, detail: detail.slice(0, 200) }, at: Date.now() });
        },
      })
    : null;
  const dnssec = c.delivery === 'mx' && c.dnssecResolver && c.dnssecResolver.length > 0 ? c.dnssecResolver[0]! : null;
  // Under DANE the validated MX set is delivered to; mx looks up the addresses of its hosts.
  const tlsPolicies: TlsPolicies = { sts, dane: dnssec ? new DaneResolver({ server: { host: dnssec.host, port: dnssec.port } }) : null, mx };
  let watcher: ShapingFileWatcher | null = null;
  const shaper = new Shaper({
    file: c.shaping === '' ? EMPTY_SHAPING : (opts.shaping ?? readShaping(c.shaping)),
    defaults: { maxConnections: c.destMaxConnections, messagesPerConnection: c.destMaxMessagesPerConnection, rate: c.destRate },
    log,
    ...(opts.shared ? { shared: opts.shared } : {}),
    ...(opts.sharedWarmup ? { sharedWarmup: opts.sharedWarmup } : {}),
    // The alert hook: an event for the webhooks (and, with the alerts step, further).
    onAlert: (a) => opts.onEvent?.({ type: 'shaping.suspended', time: new Date().toISOString(), site: a.site, egress: a.source, reason: a.reason, until: new Date(a.until).toISOString(), reply: a.reply.text, ...(a.reply.code !== undefined ? { code: a.reply.code } : {}), ...(a.reply.enhanced !== undefined ? { enhanced: a.reply.enhanced } : {}), ...(a.reply.destination !== undefined ? { destination: a.reply.destination } : {}) }),
    onClose: () => watcher?.close(),
    // Warm-up counts survive a restart (written behind, within a second: docs/shaping.md).
    warmup: queue.warmup,
  });
  if (c.shaping !== '') {
    watcher = new ShapingFileWatcher(c.shaping, opts.shaping ?? readShaping(c.shaping), (err, f) => {
      if (err) log.error({ err: err.message, file: c.shaping }, 'shaping file not reloaded, keeping the previous one');
      else {
        shaper.setFile(f);
        opts.onShapingReload?.(f);
        log.info({ file: c.shaping, sites: f.sites.length }, 'shaping file reloaded');
      }
    });
    watcher.watch(opts.shapingPollMs ?? 2000);
  }
  let pipeIdentities = opts.pipeIdentities;
  if (pipeIdentities === undefined) {
    const checked = checkPipeRoutes(c.routes);
    if (checked.problems.length > 0) throw new ConfigError([...checked.problems]);
    pipeIdentities = checked.identities;
  }
  const reports = createBounceSetup(c, queue, log, { ...(opts.bounceRules ? { rules: opts.bounceRules } : {}), ...(opts.verp ? { verp: opts.verp } : {}), ...(opts.onEvent ? { onEvent: opts.onEvent } : {}) });
  const routeOnly = async (domain: string, m?: MessageRecord): Promise<RouteResult> => {
    // Reports addressed to us are read by the bounce processor, not relayed.
    const toUs = reports.route(domain);
    if (toUs !== null) return toUs;
    // POSTERN_DELIVERY=routes: only configured next hops, never the Internet by DNS.
    if (c.delivery === 'routes' && !matchRoute(c.routes, normalizeDomain(domain)) && !(c.smarthost && c.smarthost.length > 0)) {
      return { kind: 'defer', reply: { text: `no route for ${domain} (POSTERN_DELIVERY=routes: add it to POSTERN_ROUTES, or set POSTERN_SMARTHOST or POSTERN_DELIVERY=mx)`, enhanced: '4.4.0', transient: true, command: 'ROUTE' } };
    }
    let d = await destinationFor(domain, routing);
    if (d.kind === 'smtp' && (d.viaMx || m?.tlsRequired === 'yes')) d = await applyTlsPolicy(normalizeDomain(domain), d, tlsPolicies, m?.tlsRequired);
    if (d.kind === 'bounce') return d;
    if (d.kind === 'defer') return { kind: 'defer', reply: d.reply };
    if ((d.kind === 'smtp' || d.kind === 'lmtp') && opts.selfPorts) {
      const ports = opts.selfPorts();
      const self = d.hosts.find((h) => ports.includes(h.port) && isThisHost(h.address ?? h.host, mx.policy));
      // Postfix: "mail for X loops back to myself". Refused before any connection is made.
      if (self) return { kind: 'bounce', key: `bounce:${domain}`, reply: replyRecord(554, '5.4.6', `mail for ${domain} loops back to myself (${formatHostPort(self)} is this node)`, undefined, d.key) };
    }
    return d;
  };
  // Shaping before grouping: a site's own key keeps its recipients in transactions of their own.
  const route = async (domain: string, m?: MessageRecord): Promise<RouteResult> => shaper.route(domain, await routeOnly(domain, m), c.tlsPolicy, m);
  let scheduler: Scheduler | null = null;
  // Opportunistic TLS that failed: counted per connection, logged once per host per hold.
  const onTlsFallback = (e: TlsFallbackEvent): void => {
    if (scheduler) scheduler.counters[e.kind === 'retry' ? 'tlsFallbackRetries' : 'tlsFallbackClear']++;
    if (e.heldUntil === undefined) return;
    log.warn({ destination: e.destination, host: e.host, port: e.port, address: e.address, detail: e.detail, until: new Date(e.heldUntil).toISOString() }, 'opportunistic TLS with this host failed: delivering in clear, without STARTTLS until then');
  };
  const smtpOptions: SmtpTransportOptions = {
    heloName: c.hostname,
    maxConnectionsPerDestination: c.destMaxConnections,
    maxMessagesPerConnection: c.destMaxMessagesPerConnection,
    idleTimeoutMs: c.destIdleTimeoutMs,
    timeouts: { transactionMs: c.destTransactionTimeoutMs },
    ...(opts.trustedCa ? { tls: { ca: opts.trustedCa } } : {}),
    ...(opts.tlsOutcomes ? { tlsOutcomes: opts.tlsOutcomes } : {}),
    onTlsFallback,
    onCredentialsError: (err: Error): void => log.error({ err: err.message }, 'credentials file not reloaded, keeping the previous one'),
  };
  // POSTERN_DELIVERY_THREADS > 0: each destination's pool lives in one worker thread (by hash);
  // the callbacks above stay here, called from the threads' messages.
  const smtp = c.deliveryThreads > 0 ? new AffinityTransport({ threads: c.deliveryThreads, smtp: smtpOptions }) : new SmtpTransport(smtpOptions);
  // The breaker reopens on the probe schedule of the waiting messages (destination-recovery.ts):
  // first after 1 s, doubling up to POSTERN_DEST_PROBE_INTERVAL_MS, so a destination that
  // comes back is seen within that interval (docs/queue.md "Waiting for a destination").
  const probeMaxMs = c.destProbeIntervalMs;
  const probeBaseMs = Math.min(PROBE_BASE_MS, probeMaxMs);
  const breakers = new CircuitBreakerMap({ baseOpenMs: probeBaseMs, maxOpenMs: probeMaxMs }, opts.onCircuit);
  const recovery = new DestinationRecovery({
    queue,
    log,
    window: recoveryWindow(c.destMaxConnections, c.deliveryConcurrency),
    probeBaseMs,
    probeMaxMs,
    openUntil: (key) => breakers.retryAt(key),
    wake: () => scheduler?.wake(),
  });
  // POSTERN_DEST_RATE is the shaper's default ceiling (it paces every destination).
  const gate = breakerGate(breakers);
  const bounces: BounceSink = { bounce: (message, items, originalBody) => enqueueDsn(queue, c.hostname, message, items, originalBody) };
  const withReports = reports.withReports;
  scheduler = new Scheduler({
    queue,
    log,
    route,
    transports: {
      smtp: withReports(reports.outbound(closingAlso(smtp, () => sts?.close()))),
      lmtp: withReports(smtp),
      maildir: withReports(new MaildirTransport({ hostname: c.hostname, lineEnds: c.maildirLineEnds, mayCreate: opts.maildirMayCreate ?? (() => c.maildirCreate) })),
      webhook: withReports(new WebhookTransport()),
      pipe: withReports(new PipeTransport({ identities: pipeIdentities })),
      bounces: reports.processor,
    },
    classify: reports.classify,
    bounceStats: reports.stats,
    gate,
    shaper,
    bounces,
    retryAt: (attempts, now) => nextRetryAt(attempts, now, c.retrySchedule),
    maxQueueLifetimeMs: c.maxQueueLifetimeMs,
    maxHops: c.maxHops,
    maxConcurrency: c.deliveryConcurrency,
    maxInFlightBytes: c.maxDeliveryMemory,
    leaseMs: c.queueLeaseMs,
    isSuppressed: (address) => queue.suppressions.has(address),
    ...(opts.sharedSuppressed ? { sharedSuppressed: opts.sharedSuppressed } : {}),
    recovery,
    ...(opts.pollIntervalMs !== undefined ? { pollIntervalMs: opts.pollIntervalMs } : {}),
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    // Pool counts for /v1/stats (the in-thread SMTP transport only).
    ...(smtp instanceof SmtpTransport ? { poolCounts: () => smtp.counts() } : {}),
    shapingView: (limit) => shapingView(shaper.states, (key, now) => shaper.warmupToday(key, now), limit, Date.now()),
    openCircuits: () => breakers.openCount,
  });
  return scheduler;
}

/** The transport, whose close() also closes `more` (the MTA-STS fetcher). */
function closingAlso(t: Transport, more: () => Promise<void> | undefined): Transport {
  return {
    deliver: (d, r) => t.deliver(d, r),
    close: async () => {
      await t.close();
      await more();
    },
  };
}

/** The first probe of a destination found down comes this long after (then doubling). */
const PROBE_BASE_MS = 1000;

/**
 * Released messages of one destination out at a time: a few times its connection cap (every
 * connection busy with one queued behind it, and the next window released before the last
 * drains), and at most half the delivery slots so other destinations keep flowing.
 */
export function recoveryWindow(maxConnections: number, deliveryConcurrency: number): number {
  return Math.max(1, Math.min(Math.max(4 * maxConnections, 32), Math.floor(deliveryConcurrency / 2)));
}

/** A host that is this machine: "localhost", loopback, unspecified, or one of its own addresses. */
function isThisHost(host: string, policy: AddressPolicy): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const cls = policy.classify(host);
  return cls === 'loopback' || cls === 'self' || cls === 'unspecified';
}
