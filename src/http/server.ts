// The HTTP API listener (node:http): browser checks (request-guard.ts), token check, routing,
// JSON errors and request metrics. Endpoints live one per file in routes/; this file only wires
// them. Bearer auth per RFC 6750 §2.1; a token-less API binds only loopback.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PosternError } from '../errors.js';
import { clientKey, normalizeIp } from '../lib/networks.js';
import type { Api, HttpDeps, HttpStats } from './api.js';
import { ProcessMetrics } from './process-metrics.js';
import { bearerMatches, isLoopbackHost } from './auth.js';
import { ThrottleMap } from '../delivery/throttle.js';
import { formatRate } from '../lib/rate.js';
import { readBody } from './body.js';
import { RequestGuard } from './request-guard.js';
import { CachedCounts } from './cached-counts.js';
import { fail, type HttpResult } from './respond.js';
import { Router, type RouteContext } from './router.js';
import { healthV1, readyV1 } from './routes/health-v1.js';
import { metricsV1 } from './routes/metrics-v1.js';
import { dashboardV1 } from './routes/dashboard-v1.js';
import { statsV1 } from './routes/stats-v1.js';
import { injectMessageV1 } from './routes/messages-v1.js';
import { queueV1 } from './routes/queue-v1.js';
import { alertsV1 } from './routes/alerts-v1.js';
import { deleteMessageV1, holdMessageV1, listMessagesV1, messageHeadersV1, releaseMessageV1, showMessageV1 } from './routes/queue-messages-v1.js';
import { deleteSuppressionV1, listSuppressionsV1, putSuppressionV1 } from './routes/suppressions-v1.js';

/** A request's headers must all be in within this time (also a new connection's first bytes). */
const HEADERS_TIMEOUT_MS = 10_000;
/** A whole request, body included (50 MiB at about 170 KB/s). */
const REQUEST_TIMEOUT_MS = 300_000;
/** Requests without the right token per address: 5 a second (per ms here), a burst of 20. */
const AUTH_FAILURE_RATE = 5 / 1000;
const AUTH_FAILURE_BURST = 20;
import { bounceDestinationV1, deleteDestinationV1, bounceMessageV1, holdDestinationV1, listDestinationsV1, releaseDestinationV1, retryDestinationV1, retryMessageV1 } from './routes/queue-actions-v1.js';

export type { HttpDeps } from './api.js';

export interface HttpServerHandle {
  /** The bound port (the real one when POSTERN_HTTP_PORT=0). */
  readonly port: number;
  /** The listening socket's fd (to hand to a successor process), undefined when unknown. */
  readonly fd: number | undefined;
  /** Stop accepting, let requests in flight finish (injections reach the disk), then close. */
  close(): Promise<void>;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'DELETE', 'PUT', 'PATCH', 'OPTIONS']);

export function buildRouter(): Router<Api> {
  return new Router<Api>().add(
    healthV1,
    readyV1,
    metricsV1,
    injectMessageV1,
    queueV1,
    alertsV1,
    listMessagesV1,
    showMessageV1,
    messageHeadersV1,
    holdMessageV1,
    releaseMessageV1,
    deleteMessageV1,
    retryMessageV1,
    bounceMessageV1,
    listDestinationsV1,
    holdDestinationV1,
    releaseDestinationV1,
    retryDestinationV1,
    bounceDestinationV1,
    deleteDestinationV1,
    listSuppressionsV1,
    putSuppressionV1,
    deleteSuppressionV1,
    dashboardV1,
    statsV1,
  );
}

export async function startHttpServer(deps: HttpDeps): Promise<HttpServerHandle> {
  const { config, log } = deps;
  if (config.httpPort === null) {
    throw new PosternError('PST_ERR_CONFIG_INVALID', 'POSTERN_HTTP_PORT is empty, so the HTTP API is off: do not start it');
  }
  // loadConfig() refuses this configuration already; the listener checks again because binding
  // a token-less API off loopback must not happen whoever builds the config.
  if (config.apiToken === '' && !isLoopbackHost(config.httpHost)) {
    throw new PosternError(
      'PST_ERR_LISTEN',
      `refusing to serve the HTTP API on POSTERN_HTTP_HOST=${config.httpHost} without POSTERN_API_TOKEN: set a token or bind a loopback address (127.0.0.1, ::1)`,
    );
  }
  const processMetrics = new ProcessMetrics();
  const stats: HttpStats = { requests: new Map(), messagesInjected: 0, bytesInjected: 0, messagesRejected: 0 };
  let rateLimit: ThrottleMap | null = null;
  if (config.httpRate !== null) {
    const rate = config.httpRate;
    // A burst of two seconds' worth, at least 1.
    rateLimit = new ThrottleMap(rate, Math.max(1, Math.round(rate * 2000)));
  }
  const api: Api = { deps, stats, process: processMetrics, rateLimit, authFailures: new ThrottleMap(AUTH_FAILURE_RATE, AUTH_FAILURE_BURST), counts: new CachedCounts(() => deps.queue.counts()), waiting: new CachedCounts(() => deps.queue.waitingCounts()) };
  const router = buildRouter();
  // With a token, a rebinding page still lacks it: the Host list is then the operator's choice.
  const guard = new RequestGuard({ checkHost: config.apiToken === '' || config.httpAllowedHosts.length > 0, allowedHosts: config.httpAllowedHosts });

  // Bounded like the SMTP listener: connections in total and per address, and the time a
  // connection may take to send its request headers (node's default is 60 s, checked every
  // 30 s, so silent connections piled up for 70 s each until the process had no descriptors).
  const server = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000, keepAliveTimeout: 5000 }, (req, res) => {
    handle(api, router, guard, req, res).catch((err: unknown) => {
      // send() itself failed: nothing more can be told to this client.
      log.error({ err }, 'http: response failed');
      res.destroy();
    });
  });
  server.maxConnections = config.httpMaxConnections;
  const perIp = new Map<string, number>();
  let refused = 0;
  server.on('connection', (socket) => {
    if (config.httpMaxConnectionsPerIp === 0) return;
    const key = clientKey(normalizeIp(socket.remoteAddress ?? 'unknown'), config.ipv6Prefix);
    const n = (perIp.get(key) ?? 0) + 1;
    if (n > config.httpMaxConnectionsPerIp) {
      if (refused++ % 1000 === 0) log.warn({ client: key, limit: config.httpMaxConnectionsPerIp, refused }, 'http: too many connections from one address, closed');
      socket.destroy();
      return;
    }
    perIp.set(key, n);
    socket.once('close', () => {
      const left = (perIp.get(key) ?? 1) - 1;
      if (left <= 0) perIp.delete(key);
      else perIp.set(key, left);
    });
  });

  const fd = deps.fd;
  await new Promise<void>((resolve, reject) => {
    const onError = (cause: Error): void => {
      const where = fd === undefined ? `POSTERN_HTTP_HOST=${config.httpHost} POSTERN_HTTP_PORT=${config.httpPort}` : `inherited socket ${fd} (for the HTTP API)`;
      reject(new PosternError(fd === undefined ? 'PST_ERR_LISTEN' : 'PST_ERR_LISTEN_FDS', `cannot listen on ${where}: ${cause.message}`, { cause }));
    };
    server.once('error', onError);
    const done = (): void => {
      server.off('error', onError);
      resolve();
    };
    if (fd === undefined) server.listen(config.httpPort!, config.httpHost, done);
    else server.listen({ fd }, done);
  });
  const bound = server.address();
  // An inherited socket was bound by someone else: the token-less API's loopback rule is
  // checked on the address it really has, not on POSTERN_HTTP_HOST.
  const problem = bound === null || typeof bound === 'string' ? `is not a TCP socket (${String(bound)})` : config.apiToken === '' && !isLoopbackHost(bound.address) ? `is bound to ${bound.address}, not loopback, and POSTERN_API_TOKEN is empty` : null;
  if (fd !== undefined && problem !== null) {
    await new Promise<void>((r) => server.close(() => r()));
    throw new PosternError('PST_ERR_LISTEN_FDS', `refusing to serve the HTTP API on inherited socket ${fd}: it ${problem}`);
  }
  server.on('error', (err) => log.error({ err }, 'http server error'));
  processMetrics.start();
  const port = (server.address() as AddressInfo).port;
  log.info({ host: config.httpHost, port, auth: config.apiToken !== '' }, 'http api listening');

  let closing: Promise<void> | null = null;
  const handleFd = (server as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return {
    port,
    fd: typeof handleFd === 'number' && handleFd >= 0 ? handleFd : undefined,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          processMetrics.stop();
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

async function handle(api: Api, router: Router<Api>, guard: RequestGuard, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { config, log } = api.deps;
  const method = req.method ?? 'GET';
  let route = 'unmatched';
  let result: HttpResult;
  try {
    const target = req.url ?? '/';
    const refused = guard.check(req);
    if (refused !== null) {
      result = refused;
    } else if (!target.startsWith('/')) {
      result = fail('PST_HTTP_BAD_REQUEST', 'the request target must be a path');
    } else {
      // Prefixing (not `new URL(target, base)`) keeps '//x' a path instead of a host.
      const url = new URL(`http://api${target}`);
      const m = router.match(method, url.pathname);
      if (m.kind === 'bad-path') {
        result = fail('PST_HTTP_BAD_REQUEST', 'the path has a malformed %-escape');
      } else if (m.kind === 'none') {
        result = fail('PST_HTTP_NOT_FOUND', `no endpoint ${url.pathname}`);
      } else if (m.kind === 'method') {
        route = m.path;
        result = fail('PST_HTTP_METHOD_NOT_ALLOWED', `${method} is not allowed on ${m.path}; use ${m.allow.join(', ')}`, { allow: m.allow.join(', ') });
      } else {
        route = m.route.path;
        const auth = m.route.auth || (config.metricsAuth && m.route.path === '/metrics');
        const ip = normalizeIp(req.socket.remoteAddress ?? 'unknown');
        const denied = auth && config.apiToken !== '' && !bearerMatches(req.headers.authorization, config.apiToken);
        // Requests without the token never draw on POSTERN_HTTP_RATE (a client sharing the
        // address, behind a proxy or NAT, keeps its budget); they have their own, small one,
        // so guessing the token is slowed down too.
        const wait = denied ? api.authFailures.take(ip) : auth && api.rateLimit ? api.rateLimit.take(ip) : 0;
        if (denied && wait > 0) {
          result = fail('PST_HTTP_RATE_LIMITED', `too many requests without the right token from your address; retry in ${Math.ceil(wait / 1000)} s`, { 'retry-after': String(Math.ceil(wait / 1000)) });
        } else if (denied) {
          result = fail('PST_HTTP_UNAUTHORIZED', 'missing or wrong bearer token (Authorization: Bearer $POSTERN_API_TOKEN)', { 'www-authenticate': 'Bearer realm="postern"' });
        } else if (wait > 0) {
          result = fail('PST_HTTP_RATE_LIMITED', `too many requests from your address (POSTERN_HTTP_RATE=${formatRate(config.httpRate!)}); retry in ${Math.ceil(wait / 1000)} s`, { 'retry-after': String(Math.ceil(wait / 1000)) });
        } else {
          const ctx: RouteContext = {
            req,
            url,
            params: m.params,
            clientIp: normalizeIp(req.socket.remoteAddress ?? 'unknown'),
            body: () => readBody(req, config.httpMaxBodyBytes),
          };
          result = await m.route.handler(ctx, api);
        }
      }
    }
  } catch (err) {
    log.error({ err, method, url: req.url }, 'http: handler failed');
    result = fail('PST_HTTP_INTERNAL', 'internal error (see the server log)');
  }
  count(api.stats, KNOWN_METHODS.has(method) ? method : 'other', route, result.status);
  send(req, res, result);
}

function count(stats: HttpStats, method: string, route: string, code: number): void {
  const key = `${method} ${route} ${code}`;
  const e = stats.requests.get(key);
  if (e === undefined) stats.requests.set(key, { method, route, code, n: 1 });
  else e.n++;
}

function send(req: IncomingMessage, res: ServerResponse, r: HttpResult): void {
  if (res.destroyed) return; // the client went away
  const text = r.text ?? `${JSON.stringify(r.json ?? null)}\n`;
  const headers: Record<string, string | number> = {
    'content-type': r.contentType ?? 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...r.headers,
  };
  // A body left unread (refused before or while reading it) is never read: node would
  // otherwise dump the rest of it to reuse the connection.
  if (!req.complete) headers.connection = 'close';
  res.writeHead(r.status, headers);
  res.end(text);
}
