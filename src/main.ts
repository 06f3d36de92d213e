// The composition root: the only module that knows every other. startNode() wires config,
// logger, queue, users, TLS and the SMTP listeners together and returns a handle whose
// close() shuts them down in order (listeners, sessions, then the queue).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AuthResSettings } from './filter/authres/filter.js';
import { parseDkimKeys, loadKeys } from './filter/dkim/keys.js';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { Config } from './config/schema.js';
import { PosternError } from './errors.js';
import { ConfigError } from './config/load.js';
import { Queue } from './queue/store.js';
import { UserDb } from './auth/users.js';
import { NetworkList } from './lib/networks.js';
import { SmtpServer } from './smtp/server.js';
import type { SessionContext, TlsSetup } from './smtp/context.js';
import type { Logger } from './log/logger.js';
import { createDelivery, type DeliveryOptions } from './delivery/engine.js';
import { FilterPool } from './filter/pool.js';
import { SpamModel } from './filter/spam/model.js';
import { startHttpServer, type HttpServerHandle } from './http/server.js';
import { EventSender } from './events/sender.js';
import { EventRecorder } from './events/event-recorder.js';
import type { EventOrigin, MailEvent } from './queue/events.js';
import type { Scheduler } from './delivery/scheduler.js';

export interface PosternNode {
  readonly config: Readonly<Config>;
  readonly queue: Queue;
  readonly smtp: SmtpServer;
  readonly ctx: SessionContext;
  /** null with POSTERN_DELIVERY=off. */
  readonly delivery: Scheduler | null;
  readonly ports: { smtpPort: number; smtpsPort: number | null; httpPort: number | null };
  reloadUsers(): Promise<void>;
  close(): Promise<void>;
}

export function loadTls(config: Readonly<Config>): TlsSetup | null {
  if (config.tlsCert === '') return null;
  try {
    const options: SecureContextOptions = { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey), minVersion: 'TLSv1.2' };
    return { options, context: createSecureContext(options) };
  } catch (cause) {
    throw new PosternError('PST_ERR_TLS_FILES', `cannot load POSTERN_TLS_CERT=${config.tlsCert} / POSTERN_TLS_KEY=${config.tlsKey}: ${(cause as Error).message}`, { cause });
  }
}

function score(env: string, raw: string): number | null {
  if (raw.trim() === '') return null;
  const n = Number(raw);
  if (!(n >= 0 && n <= 1)) throw new ConfigError([`${env}=${JSON.stringify(raw)} is invalid: expected a score from 0 to 1, or empty`]);
  return n;
}

export async function startNode(config: Readonly<Config>, log: Logger, options: { delivery?: DeliveryOptions } = {}): Promise<PosternNode> {
  const tls = loadTls(config);
  const users = config.authUsers === '' ? null : await UserDb.load(config.authUsers);
  const modules = config.filterModules.split(',').map((m) => m.trim()).filter((m) => m !== '');
  const spam = config.spamModel === '' ? undefined : { model: config.spamModel, tagScore: score('POSTERN_SPAM_TAG_SCORE', config.spamTagScore), rejectScore: score('POSTERN_SPAM_REJECT_SCORE', config.spamRejectScore), quarantineScore: score('POSTERN_SPAM_QUARANTINE_SCORE', config.spamQuarantineScore) };
  if (spam) {
    // Fail at start-up, naming the variable, rather than 451 every message later.
    try {
      SpamModel.deserialize(readFileSync(spam.model));
    } catch (err) {
      throw new ConfigError([`POSTERN_SPAM_MODEL=${JSON.stringify(spam.model)} is invalid: ${(err as Error).message}`]);
    }
  }
  if (config.dmarcEnforce && !config.authResults) throw new ConfigError(['POSTERN_DMARC_ENFORCE=true needs POSTERN_AUTH_RESULTS=true']);
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
  const dkimKeys = parseDkimKeys(config.dkimKeys);
  if ('error' in dkimKeys) throw new ConfigError([`POSTERN_DKIM_KEYS is invalid: ${dkimKeys.error}`]);
  if (dkimKeys.length > 0) {
    try {
      loadKeys(dkimKeys); // fail at start-up, not with a 451 per message later
    } catch (err) {
      throw new ConfigError([`POSTERN_DKIM_KEYS is invalid: ${(err as Error).message}`]);
    }
    builtins.push({ name: 'dkim', module: fileURLToPath(new URL('./filter/dkim/filter.js', import.meta.url)), settings: { keys: dkimKeys } });
  }
  const filters =
    modules.length > 0 || spam || builtins.length > 0
      ? new FilterPool({ workers: config.workers, modules, builtins, timeoutMs: config.filterTimeoutMs, maxQueue: config.filterQueue, maxBatch: config.filterBatch, onError: (err) => log.warn({ err, mod: 'filter' }, 'filter worker failed outside a task'), ...(spam ? { spam } : {}) })
      : null;
  const queue = Queue.open({ path: config.dataDir, mapSizeBytes: config.queueMapBytes, leaseMs: config.queueLeaseMs, logger: log.child({ mod: 'queue' }) });
  const ctx: SessionContext = {
    config,
    queue,
    users,
    tls,
    filters,
    trusted: new NetworkList(config.trustedNetworks),
    localDomains: new Set(config.localDomains),
    log: log.child({ mod: 'smtp' }),
    counters: { connections: 0, connectionsRejected: 0, messagesAccepted: 0, bytesAccepted: 0, messagesRejected: 0, recipientsAccepted: 0, recipientsRejected: 0, authFailures: 0, tlsHandshakes: 0, filterRejected: 0, filterTempfailed: 0, filterQuarantined: 0 },
    pendingWrites: 0,
    draining: false,
  };
  let events: EventSender | null = null;
  let recorder: EventRecorder | null = null;
  let emit: ((e: MailEvent, origin?: EventOrigin) => void) | undefined;
  if (config.eventsUrl !== '') {
    let ok = false;
    try {
      ok = ['http:', 'https:'].includes(new URL(config.eventsUrl).protocol);
    } catch {
      ok = false;
    }
    if (!ok) {
      await queue.close();
      throw new ConfigError([`POSTERN_EVENTS_URL=${JSON.stringify(config.eventsUrl)} is invalid: expected an http:// or https:// URL`]);
    }
    const elog = log.child({ mod: 'events' });
    let sender: EventSender;
    try {
      sender = new EventSender(queue.events, { url: config.eventsUrl, log: elog, ...(config.eventsToken !== '' ? { token: config.eventsToken } : {}) });
    } catch (err) {
      await queue.close();
      throw err;
    }
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
  try {
    delivery = config.delivery === 'off' ? null : createDelivery(config, queue, log.child({ mod: 'delivery' }), { ...options.delivery, ...(emit ? { onEvent: emit } : {}) });
  } catch (err) {
    await queue.close();
    throw err;
  }
  if (delivery) {
    const d = delivery;
    ctx.onQueued = () => d.wake();
  }
  const smtp = new SmtpServer(ctx);
  let ports: { smtpPort: number; smtpsPort: number | null; httpPort: number | null };
  let http: HttpServerHandle | null = null;
  try {
    const smtpPorts = await smtp.listen();
    if (config.httpPort !== null) {
      http = await startHttpServer({
        config,
        queue,
        log: log.child({ mod: 'http' }),
        smtpCounters: () => ctx.counters,
        delivery: () => delivery?.counters ?? null,
        onQueued: () => delivery?.wake(),
        ...(emit ? { onEvent: emit } : {}),
        destinations: () => delivery?.destinations ?? null,
        filterUtilization: () => filters?.utilization ?? null,
        filterBatches: () => filters?.batchStats ?? null,
        pools: () => delivery?.poolCounts() ?? null, // [dashboard]
        events: () => (events && recorder ? { pending: queue.events.pending, dropped: queue.events.dropped, sent: events.sent, failures: events.failures, aggregated: recorder.aggregated } : null),
        ready: () => !ctx.draining,
      });
    }
    ports = { ...smtpPorts, httpPort: http?.port ?? null };
  } catch (err) {
    await smtp.close(0).catch(() => {});
    await filters?.close();
    await queue.close();
    throw err;
  }
  await delivery?.start();
  recorder?.start();
  events?.start();
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
    ports,
    async reloadUsers() {
      if (config.authUsers === '') return;
      ctx.users = await UserDb.load(config.authUsers);
      log.info({ users: ctx.users.size }, 'users reloaded');
    },
    close() {
      closed ??= (async () => {
        log.info('shutting down');
        if (timer) clearInterval(timer);
        await Promise.all([http?.close(), smtp.close()]);
        await delivery?.stop();
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
