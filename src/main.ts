// The composition root: the only module that knows every other. startNode() wires the
// resolved config (every setting parsed and checked by config/, the files it names read by
// config/resources.ts), logger, queue, users, TLS and the listeners together and returns a
// handle whose close() shuts them down in order (SMTP listeners and sessions, the HTTP API,
// delivery, filters, then the queue).
import { fileURLToPath } from 'node:url';
import type { AuthResSettings } from './filter/authres/filter.js';
import type { Config } from './config/schema.js';
import { loadResources } from './config/resources.js';
import { RecipientMapFile, isMailboxInMap } from './config/recipient-map.js';
import { LmtpVerifier } from './smtp/lmtp-verifier.js';
import { BodyBudget } from './smtp/body-budget.js';
import { Queue } from './queue/store.js';
import { UserDb } from './auth/users.js';
import { SenderLogins } from './auth/sender-logins.js';
import { PasswordChecker } from './auth/password-checker.js';
import { AuthPenalty } from './auth/auth-penalty.js';
import { NetworkList } from './lib/networks.js';
import { SmtpServer } from './smtp/server.js';
import type { SessionContext } from './smtp/context.js';
import type { Logger } from './log/logger.js';
import { createDelivery, type DeliveryOptions } from './delivery/engine.js';
import { FilterPool } from './filter/pool.js';
import { startHttpServer, type HttpServerHandle } from './http/server.js';
import { EventSender } from './events/sender.js';
import { EventRecorder } from './events/event-recorder.js';
import type { EventOrigin, MailEvent } from './queue/events.js';
import type { Scheduler } from './delivery/scheduler.js';
import { createAlertMonitor, type AlertMonitor, type AlertProbes } from './delivery/alert-monitor.js';
import type { ShapingFile } from './config/shaping.js';
import { loadVerpKey } from './config/verp-key.js';
import { RedisLink } from './cluster/redis-link.js';
import { ClusterLimiter } from './cluster/cluster-limiter.js';
import { SharedSuppressions } from './cluster/shared-suppressions.js';
import { SharedAuthCounts } from './cluster/shared-auth-failures.js';
import { SharedWarmupCounts } from './cluster/shared-warmup.js';
import { hostname as osHostname } from 'node:os';
import { PosternError } from './errors.js';
import type { VerpKey } from './protocol/verp.js';
import { checkListenFds, type ListenFds, type ListenerName } from './takeover/listen-fds.js';
import { TlsReporter, type TlsReporterOptions } from './delivery/tls-report.js';
import { Resolver } from 'node:dns/promises';

/** How often the recipient map file is checked for changes. */
const RECIPIENTS_POLL_MS = 1000;

export interface PosternNode {
  readonly config: Readonly<Config>;
  readonly queue: Queue;
  readonly smtp: SmtpServer;
  readonly ctx: SessionContext;
  /** null with POSTERN_DELIVERY=off. */
  readonly delivery: Scheduler | null;
  /** Anomaly alerts (docs/alerts.md); null with POSTERN_DELIVERY=off. */
  readonly alerts: AlertMonitor | null;
  /** The shared state (POSTERN_REDIS_URL); null without it. */
  readonly cluster: { link: RedisLink; limiter: ClusterLimiter; suppressions: SharedSuppressions; auth: SharedAuthCounts; warmup: SharedWarmupCounts } | null;
  readonly ports: { smtpPort: number; smtpsPort: number | null; httpPort: number | null };
  /** The TLS reporter (POSTERN_TLSRPT); null when off. */
  readonly tlsReport: TlsReporter | null;
  reloadUsers(): Promise<void>;
  /** Re-read POSTERN_RECIPIENTS now (it is also re-read when the file changes); null when fine. */
  reloadRecipients(): Error | null;
  /** The listening sockets' fds by listener name, to hand to a successor (a takeover). */
  listenerFds(): Map<ListenerName, number>;
  close(): Promise<void>;
}

export interface StartOptions {
  delivery?: DeliveryOptions;
  /** Inherited listening sockets (takeover/listen-fds.ts): the listeners take these instead of binding. */
  listenFds?: ListenFds | null;
  /**
   * Delivery and the event sender start once this settles, not at start-up: a successor waits
   * for the node it replaces to exit (the scheduler takes back every lease when it starts, as
   * the folder's only deliverer, and shaping's limits hold per process).
   */
  deliveryAfter?: Promise<unknown>;
  /** Replaces parts of the TLS reporter (POSTERN_TLSRPT): its DNS, clock, CAs and address policy (tests). */
  tlsReport?: Partial<TlsReporterOptions>;
}

export async function startNode(config: Readonly<Config>, log: Logger, options: StartOptions = {}): Promise<PosternNode> {
  const { tls, users, recipients, senderLogins, bounceRules, shaping, pipeIdentities } = await loadResources(config);
  // Made (or read) before anything that needs closing starts; the same key tags outbound VERP
  // senders and checks the addresses of reports coming back.
  const verp: VerpKey | undefined = config.verpDomain === '' ? undefined : { domain: config.verpDomain, key: loadVerpKey(config.verpSecret, config.dataDir) };
  const modules = config.filterModules;
  const spam = config.spamModel === '' ? undefined : { model: config.spamModel, tagScore: config.spamTagScore, rejectScore: config.spamRejectScore, quarantineScore: config.spamQuarantineScore };
  const builtins: Array<{ name: string; module: string; settings: unknown }> = [];
  if (config.authResults) {
    const settings: AuthResSettings = {
      hostname: config.hostname,
      enforceDmarc: config.dmarcEnforce,
      // Under the pool's own timeout (which also covers queueing), or DNS stalls would become 451s.
      timeoutMs: Math.min(config.authResultsTimeoutMs, Math.floor(config.filterTimeoutMs * 0.8)),
    };
    builtins.push({ name: 'authres', module: fileURLToPath(new URL('./filter/authres/filter.js', import.meta.url)), settings });
  }
  if (config.dkimKeys.length > 0) {
    builtins.push({ name: 'dkim', module: fileURLToPath(new URL('./filter/dkim/filter.js', import.meta.url)), settings: { keys: config.dkimKeys, signTrusted: config.dkimSignTrusted } });
  }
  const filters =
    modules.length > 0 || spam || builtins.length > 0
      ? new FilterPool({ workers: config.workers, modules, builtins, timeoutMs: config.filterTimeoutMs, maxQueue: config.filterQueue, maxBatch: config.filterBatch, onError: (err) => log.warn({ err, mod: 'filter' }, 'filter worker failed outside a task'), ...(spam ? { spam } : {}) })
      : null;
  const queue = Queue.open({ path: config.dataDir, mapSizeBytes: config.queueMapBytes, leaseMs: config.queueLeaseMs, logger: log.child({ mod: 'queue' }) });
  // Shared state (docs/scale-out.md): limits, suppressions and AUTH failure counts in Redis.
  let redisChanged: (up: boolean) => void = () => {};
  let cluster: PosternNode['cluster'] = null;
  if (config.redisUrl !== '') {
    const clog = log.child({ mod: 'cluster' });
    const link = new RedisLink({ url: config.redisUrl, timeoutMs: config.redisTimeoutMs, log: clog, onChange: (up) => redisChanged(up) });
    const limiter = new ClusterLimiter({ link, prefix: config.redisPrefix, nodeId: `${osHostname()}:${process.pid}:${Date.now().toString(36)}`, leaseMs: config.redisLeaseMs, log: clog });
    const suppressions = new SharedSuppressions({ link, prefix: config.redisPrefix, list: queue.suppressions, log: clog });
    queue.suppressions.setMirror(suppressions);
    cluster = { link, limiter, suppressions, auth: new SharedAuthCounts({ link, prefix: config.redisPrefix }), warmup: new SharedWarmupCounts({ link, prefix: config.redisPrefix }) };
  }
  const ctx: SessionContext = {
    config,
    queue,
    users,
    passwords: users === null ? null : new PasswordChecker({ concurrency: config.authConcurrency, maxQueue: config.authQueue }),
    authPenalty: new AuthPenalty({ maxFailures: config.authMaxFailures, userMaxFailures: config.authUserMaxFailures, lockoutMs: config.authLockoutMs, maxDelayMs: config.authMaxDelayMs, ...(cluster ? { shared: cluster.auth } : {}) }),
    senderLogins,
    tls,
    filters,
    trusted: new NetworkList(config.trustedNetworks),
    // The VERP domain takes reports from anyone, as a local domain does.
    localDomains: new Set(verp ? [...config.localDomains, verp.domain] : config.localDomains),
    log: log.child({ mod: 'smtp' }),
    counters: { connections: 0, connectionsRejected: 0, messagesAccepted: 0, bytesAccepted: 0, messagesRejected: 0, recipientsAccepted: 0, recipientsRejected: 0, authFailures: 0, tlsHandshakes: 0, filterRejected: 0, filterTempfailed: 0, filterQuarantined: 0 },
    pendingWrites: 0,
    bodyBudget: new BodyBudget(config.maxBodyMemory, config.maxBodyMemoryPerClient),
    draining: false,
  };
  const rmap =
    recipients === null
      ? null
      : new RecipientMapFile(config.recipients, recipients, (err, m) => {
          if (err) log.error({ err: err.message, file: config.recipients }, 'recipient map not reloaded, keeping the previous one');
          else log.info({ mailboxes: m.mailboxes.size, aliases: m.aliases.size, catchAll: m.catchAll.size }, 'recipient map reloaded');
        });
  if (rmap) {
    ctx.recipients = rmap;
    rmap.watch(RECIPIENTS_POLL_MS);
  }
  if (verp) ctx.verp = verp;
  if (config.bounceAddresses.length > 0) ctx.bounceAddresses = new Set(config.bounceAddresses);
  if (config.rcptVerify === 'lmtp') ctx.verifier = new LmtpVerifier({ hostname: config.hostname, timeoutMs: config.rcptVerifyTimeoutMs });
  // The mailboxes the map lists may be created, others only with POSTERN_MAILDIR_CREATE; RCPT
  // and the Maildir transport ask the same function, so what RCPT accepts can be delivered.
  const maildirMayCreate = (address: string): boolean => config.maildirCreate || (rmap !== null && isMailboxInMap(rmap.current, address));
  ctx.mayCreateMailbox = maildirMayCreate;
  // The pools a trusted client's X-Postern-Pool may name: the shaping file as the delivery side
  // last applied it (the start-up version with POSTERN_DELIVERY=off, which never re-reads it).
  let shapingNow = shaping;
  ctx.poolExists = (name) => shapingNow?.pools.some((p) => p.name === name) ?? false;
  let events: EventSender | null = null;
  let recorder: EventRecorder | null = null;
  let emit: ((e: MailEvent, origin?: EventOrigin) => void) | undefined;
  if (config.eventsUrl !== '') {
    const elog = log.child({ mod: 'events' });
    const sender = new EventSender(queue.events, { url: config.eventsUrl, log: elog, ...(config.eventsToken !== '' ? { token: config.eventsToken } : {}) });
    events = sender;
    const r = new EventRecorder(queue.events, {
      maxEvents: config.eventsMax,
      maxAgeMs: config.eventsMaxAgeMs,
      rejectedIntervalMs: config.eventsRejectedIntervalMs,
      onAppend: () => sender.nudge(),
      onError: (err) => elog.warn({ err }, 'event log write failed'),
    });
    recorder = r;
    emit = (e, origin) => r.record(e, origin);
    ctx.onEvent = emit;
  }
  let delivery: Scheduler | null = null;
  let selfPorts: number[] = []; // known once the listeners are bound
  const probes: AlertProbes = { queue: () => queue.backlog(), ...(filters ? { filter: () => filters.load } : {}) };
  const alerts = config.delivery === 'off' ? null : createAlertMonitor(config, log.child({ mod: 'alerts' }), { ...(shaping?.alerts ? { file: shaping.alerts } : {}), ...(emit ? { emit } : {}), probes });
  // One redis-down alert while Redis is down (the link says when), cleared when it is back.
  redisChanged = (up) => alerts?.engine.condition('redis-down', 'cluster', !up, Date.now());
  if (cluster) {
    cluster.link.start();
    cluster.limiter.start();
  }
  // Delivery events feed the alerts, and the event log when there is one (else an embedder's hook).
  const sink = emit ?? options.delivery?.onEvent;
  const onDeliveryEvent = alerts ? (e: MailEvent): void => { alerts.observe(e); sink?.(e); } : sink;
  // TLS reports (RFC 8460): counts from the outbound TLS policies, sent daily through this node's own queue or HTTPS.
  let tlsReport: TlsReporter | null = null;
  if (config.tlsrpt && config.delivery !== 'off') {
    const rlog = log.child({ mod: 'tlsrpt' });
    tlsReport = new TlsReporter({
      dataDir: config.dataDir,
      organization: config.tlsrptOrg === '' ? config.hostname : config.tlsrptOrg,
      contact: config.tlsrptContact === '' ? `postmaster@${config.hostname}` : config.tlsrptContact,
      hostname: config.hostname,
      resolver: new Resolver({ timeout: 5000, tries: 2 }),
      enqueue: async (sender, recipient, body) => {
        const id = await queue.enqueue({ sender, recipients: [{ address: recipient }] }, body);
        delivery?.wake();
        return id;
      },
      onError: (what, err) => rlog.warn({ err: err instanceof Error ? err.message : String(err) }, `TLS report not sent: ${what}`),
      onSent: (domain, rua) => rlog.info({ domain, rua: rua.startsWith('https:') ? new URL(rua).origin : rua }, 'TLS report sent'),
      ...options.tlsReport,
    });
  }
  try {
    delivery = config.delivery === 'off' ? null : createDelivery(config, queue, log.child({ mod: 'delivery' }), {
      ...(tlsReport ? { tlsOutcomes: tlsReport } : {}),
      maildirMayCreate, bounceRules, shaping, pipeIdentities, ...(verp ? { verp } : {}),
      ...(cluster ? { shared: cluster.limiter, sharedWarmup: cluster.warmup, sharedSuppressed: (a: readonly string[]) => cluster!.suppressions.suppressed(a) } : {}),
      ...(alerts ? { onCircuit: (key: string, open: boolean) => alerts.circuit(key, open) } : {}),
      ...options.delivery, ...(onDeliveryEvent ? { onEvent: onDeliveryEvent } : {}), selfPorts: () => selfPorts,
      onShapingReload: (f: ShapingFile) => { shapingNow = f; alerts?.reload(f.alerts); options.delivery?.onShapingReload?.(f); },
    });
  } catch (err) {
    rmap?.close();
    await closeCluster(cluster);
    await ctx.passwords?.close();
    await queue.close();
    throw err;
  }
  if (delivery) {
    const d = delivery;
    ctx.onQueued = () => d.wake();
  }
  const smtp = new SmtpServer(ctx);
  const fds = options.listenFds ?? null;
  let ports: { smtpPort: number; smtpsPort: number | null; httpPort: number | null };
  let http: HttpServerHandle | null = null;
  try {
    if (fds !== null) checkListenFds(fds, { smtp: true, smtps: config.smtpsPort !== null && tls !== null, http: config.httpPort !== null });
    const smtpPorts = await smtp.listen({ smtp: fds?.get('smtp'), smtps: fds?.get('smtps') });
    selfPorts = smtpPorts.smtpsPort === null ? [smtpPorts.smtpPort] : [smtpPorts.smtpPort, smtpPorts.smtpsPort];
    if (config.httpPort !== null) {
      const httpFd = fds?.get('http');
      http = await startHttpServer({
        config,
        ...(httpFd !== undefined ? { fd: httpFd } : {}),
        queue,
        log: log.child({ mod: 'http' }),
        smtpCounters: () => ctx.counters,
        bodyMemory: () => ({ ...ctx.bodyBudget!.stats(), limit: ctx.bodyBudget!.limit, perClient: ctx.bodyBudget!.perClient }),
        delivery: () => delivery?.counters ?? null,
        onQueued: () => delivery?.wake(),
        ...(emit ? { onEvent: emit } : {}),
        destinations: () => delivery?.destinations ?? null,
        alerts: () => alerts?.engine ?? null,
        filterUtilization: () => filters?.utilization ?? null,
        filterBatches: () => filters?.batchStats ?? null,
        filterLoad: () => filters?.load ?? null,
        shaping: (limit) => delivery?.shapingView(limit) ?? null,
        openCircuits: () => delivery?.openCircuits() ?? 0,
        pools: () => delivery?.poolCounts() ?? null,
        bounces: () => delivery?.bounceStats() ?? null,
        events: () => (events && recorder ? { pending: queue.events.pending, dropped: queue.events.dropped, sent: events.sent, failures: events.failures, aggregated: recorder.aggregated } : null),
        ready: () => !ctx.draining,
        poolExists: ctx.poolExists,
      });
    }
    ports = { ...smtpPorts, httpPort: http?.port ?? null };
  } catch (err) {
    await smtp.close(0).catch(() => {});
    await ctx.passwords?.close();
    await filters?.close();
    rmap?.close();
    await closeCluster(cluster);
    await queue.close();
    throw err;
  }
  let closing = false;
  let starting: Promise<void> | null = null;
  if (options.deliveryAfter === undefined) {
    starting = delivery?.start() ?? null;
    await starting;
    alerts?.start();
    recorder?.start();
    events?.start();
  } else {
    alerts?.start();
    recorder?.start();
    log.info('delivery waits for the node replaced to exit');
    const begin = (): void => {
      if (closing) return;
      log.info('the node replaced has exited: delivery starts');
      starting = (async () => {
        await delivery?.start();
        events?.start();
      })();
      starting.catch((err: unknown) => log.error({ err }, 'delivery did not start'));
    };
    options.deliveryAfter.then(begin, begin);
  }
  tlsReport?.start();
  log.info({ host: config.smtpHost, ...ports, dataDir: config.dataDir, tls: tls !== null, auth: users !== null, hostname: config.hostname, delivery: config.delivery }, 'postern listening');
  const stats = () => ({ smtp: { ...ctx.counters, sessions: smtp.sessionCount }, delivery: delivery?.counters, queue: queue.stats() });
  const timer = config.statsIntervalMs > 0 ? setInterval(() => log.info(stats(), 'stats'), config.statsIntervalMs).unref() : null;
  let closed: Promise<void> | null = null;
  return {
    config,
    queue,
    smtp,
    ctx,
    delivery,
    alerts,
    cluster,
    ports,
    tlsReport,
    async reloadUsers() {
      if (config.authUsers === '') return;
      // Both read before either is replaced: a bad file leaves the running pair in place.
      const users = await UserDb.load(config.authUsers);
      const logins = config.senderLogins === '' ? null : await SenderLogins.load(config.senderLogins);
      ctx.users = users;
      ctx.senderLogins = logins;
      log.info({ users: users.size, senderLogins: logins?.size }, 'users reloaded');
    },
    reloadRecipients() {
      return rmap ? rmap.reload() : null;
    },
    listenerFds() {
      const out = new Map<ListenerName, number>();
      const { smtp: smtpFd, smtps } = smtp.listenerFds();
      out.set('smtp', smtpFd);
      if (smtps !== undefined) out.set('smtps', smtps);
      if (http !== null) {
        if (http.fd === undefined) throw new PosternError('PST_ERR_TAKEOVER', 'the HTTP listener has no fd to hand over');
        out.set('http', http.fd);
      }
      return out;
    },
    close() {
      closed ??= (async () => {
        log.info('shutting down');
        closing = true;
        await starting?.catch(() => {});
        rmap?.close();
        if (timer) clearInterval(timer);
        alerts?.stop();
        // SMTP drains while the HTTP API still answers: /ready says 503 meanwhile, so a load
        // balancer or orchestrator sees the drain instead of a refused connection.
        await smtp.close();
        await http?.close();
        await ctx.passwords?.close();
        await delivery?.stop();
        await tlsReport?.close();
        await closeCluster(cluster);
        await filters?.close();
        await recorder?.close(); // its last summaries, before the sender's last batch
        await events?.close();
        const last = stats();
        await queue.close();
        log.info(last, 'stopped');
      })();
      return closed;
    },
  };
}

/** Leases given back and the node out of the live set (bounded by the Redis deadline), then the connection closed. */
async function closeCluster(c: PosternNode['cluster']): Promise<void> {
  if (!c) return;
  await c.limiter.close();
  await c.link.close();
}
