// What a browser must not be able to make the API do for a web page: the checks run on every
// request before routing. Host (RFC 9110 §7.2) against DNS rebinding, Origin (RFC 6454 §7) and
// Sec-Fetch-Site (Fetch Metadata) against cross-site requests, and a JSON Content-Type on
// every request that changes state, which no cross-site form or simple request can send.
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { fail, type HttpResult } from './respond.js';

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** A Host value: a name, an IPv4 address or a bracketed IPv6 address, and a port. No userinfo. */
const HOST = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::([0-9]{1,5}))?$/i;
/** A serialised origin (scheme "://" host [":" port]), nothing after it. */
const ORIGIN = /^(https?):\/\/(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::([0-9]{1,5}))?$/i;
/** Longest Host or Origin looked at; longer is refused unread. */
const MAX_HEADER_CHARS = 300;

export interface RequestGuardOptions {
  /** Refuse a Host that is not an IP literal, localhost or one of allowedHosts. */
  checkHost: boolean;
  /** Lower-case host names (POSTERN_HTTP_ALLOWED_HOSTS). */
  allowedHosts: readonly string[];
}

interface HostPort {
  /** Lower case, brackets kept for IPv6, no trailing dot. */
  name: string;
  /** null when the header gave none. */
  port: number | null;
}

function parseHost(raw: string): HostPort | null {
  if (raw.length > MAX_HEADER_CHARS) return null;
  const m = HOST.exec(raw);
  if (m === null) return null;
  const port = m[2] === undefined ? null : Number(m[2]);
  if (port !== null && port > 65535) return null;
  return { name: m[1]!.toLowerCase().replace(/\.$/, ''), port };
}

export class RequestGuard {
  readonly #checkHost: boolean;
  readonly #allowed: ReadonlySet<string>;

  constructor(o: RequestGuardOptions) {
    this.#checkHost = o.checkHost;
    this.#allowed = new Set(o.allowedHosts.map((h) => h.toLowerCase().replace(/\.$/, '')));
  }

  /**
   * An IP literal is always accepted: a browser sends one only when the page's own origin is
   * that address, so DNS rebinding (which needs a name the attacker controls) cannot produce
   * it. The port is not compared: an ssh tunnel or a container port mapping changes it, and it
   * plays no part in rebinding.
   */
  #hostAllowed(h: HostPort): boolean {
    if (!this.#checkHost) return true;
    const bare = h.name.startsWith('[') ? h.name.slice(1, -1) : h.name;
    if (isIP(bare) !== 0) return true;
    return bare === 'localhost' || this.#allowed.has(bare);
  }

  /** null when the request may go on; otherwise the refusal to send. */
  check(req: IncomingMessage): HttpResult | null {
    const hostHeader = req.headers.host;
    let host: HostPort | null = null;
    // node:http already refuses an HTTP/1.1 request without Host (400); an HTTP/1.0 one
    // without it cannot come from a browser.
    if (hostHeader !== undefined) {
      host = parseHost(hostHeader);
      if (host === null) return fail('PST_HTTP_BAD_REQUEST', 'the Host header is malformed');
      if (!this.#hostAllowed(host)) {
        return fail('PST_HTTP_HOST_NOT_ALLOWED', `Host ${JSON.stringify(host.name)} is not one this API answers to: use an IP address or localhost, or add the name to POSTERN_HTTP_ALLOWED_HOSTS`);
      }
    }

    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, hostHeader)) {
      return fail('PST_HTTP_CROSS_ORIGIN', `requests from pages of another origin (${JSON.stringify(origin.slice(0, 100))}) are refused`);
    }

    const method = req.method ?? 'GET';
    if (!STATE_CHANGING.has(method)) return null;
    const site = req.headers['sec-fetch-site'];
    // same-site is refused too: another port of the same host is same-site, not same-origin.
    if (site !== undefined && site !== 'same-origin' && site !== 'none') {
      return fail('PST_HTTP_CROSS_ORIGIN', `${method} from a ${JSON.stringify(site.slice(0, 20))} page is refused (Sec-Fetch-Site)`);
    }
    const type = req.headers['content-type'];
    const length = req.headers['content-length'];
    const hasBody = (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (type !== undefined || hasBody) {
      const media = (type ?? '').split(';')[0]!.trim().toLowerCase();
      if (media !== 'application/json') {
        return fail('PST_HTTP_UNSUPPORTED_MEDIA_TYPE', `${method} bodies must be Content-Type: application/json, not ${JSON.stringify(media.slice(0, 100))}`);
      }
    }
    return null;
  }
}

/**
 * The Origin names the host:port the request was sent to (the Host header), whatever the
 * scheme (a TLS proxy in front makes it https). "null" (sandboxed frames, file: pages) and
 * anything that is not a plain http(s) origin are refused.
 */
function sameOrigin(origin: string, hostHeader: string | undefined): boolean {
  if (hostHeader === undefined || origin.length > MAX_HEADER_CHARS) return false;
  const m = ORIGIN.exec(origin);
  const host = parseHost(hostHeader);
  if (m === null || host === null) return false;
  const defaultPort = m[1]!.toLowerCase() === 'https' ? 443 : 80;
  const oPort = m[3] === undefined ? defaultPort : Number(m[3]);
  const hPort = host.port ?? defaultPort;
  return m[2]!.toLowerCase().replace(/\.$/, '') === host.name && oPort === hPort;
}
