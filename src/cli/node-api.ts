// The command line's client of the running node's HTTP API: the queue changes (`queue flush`,
// `hold`, `release`, `delete`, `bounce`) go through the node, the only process that writes its
// data dir. Address and token come from the same configuration the node reads
// (POSTERN_HTTP_HOST, POSTERN_HTTP_PORT, POSTERN_API_TOKEN). Nothing listening is
// PST_ERR_CLI_NODE_DOWN (exit 69); a token the node refuses is a configuration error (78).
import type { Config } from '../config/schema.js';
import { PosternError } from '../errors.js';

/** One request may change up to 500 messages (a destination batch): ample, yet bounded. */
const REQUEST_TIMEOUT_MS = 120_000;

export interface ApiAnswer {
  status: number;
  json: Record<string, unknown>;
}

/** Where to reach a listener bound to `host`: a wildcard bind is reached on loopback. */
export function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host;
}

export class NodeApi {
  readonly base: string;
  readonly #token: string;

  constructor(config: Readonly<Config>) {
    if (config.httpPort === null || config.httpPort === 0) {
      const why = config.httpPort === null ? 'is empty: the HTTP API is off' : 'is 0: the port the node picked is unknown';
      throw new PosternError('PST_ERR_CONFIG_INVALID', `POSTERN_HTTP_PORT ${why}, and changes to the queue go through the running node's HTTP API (set POSTERN_HTTP_PORT to the node's port)`);
    }
    const host = connectHost(config.httpHost);
    this.base = `http://${host.includes(':') ? `[${host}]` : host}:${config.httpPort}`;
    this.#token = config.apiToken;
  }

  async request(method: 'GET' | 'POST' | 'DELETE', path: string): Promise<ApiAnswer> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token !== '') headers.authorization = `Bearer ${this.#token}`;
    let res: Response;
    try {
      res = await fetch(this.base + path, { method, headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const why = cause?.code ?? cause?.message ?? (err as Error).message;
      throw new PosternError('PST_ERR_CLI_NODE_DOWN', `the node is not running, or not reachable: ${method} ${this.base}${path} failed (${why}); start it with \`postern start\` (POSTERN_HTTP_HOST and POSTERN_HTTP_PORT say where its HTTP API listens)`);
    }
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
    } catch {
      throw new PosternError('PST_ERR_CLI_NODE_REFUSED', `${method} ${this.base}${path}: HTTP ${res.status}, not JSON (is this postern's HTTP API?)`);
    }
    if (res.status === 401) {
      throw new PosternError('PST_ERR_CONFIG_INVALID', `the node refused the token (HTTP 401): set POSTERN_API_TOKEN to the node's`);
    }
    return { status: res.status, json };
  }
}

/** The error text of an API answer ({ error: { code, message } }). */
export function apiError(a: ApiAnswer): string {
  const e = a.json.error as { message?: string } | undefined;
  return `${e?.message ?? 'HTTP ' + a.status}`;
}
