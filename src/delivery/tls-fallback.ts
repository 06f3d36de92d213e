// Opportunistic TLS's fallback to clear (RFC 7435 §3: encrypt when it works, else deliver in
// clear; as Postfix at smtp_tls_security_level = may, KumoMTA's
// opportunistic_tls_reconnect_on_failed_handshake): who may fall back, and the hosts whose TLS
// failed lately, sent to in clear without STARTTLS for TLS_FALLBACK_HOLD_MS, then TLS again.
import type { TlsAuth, TlsPolicy } from './types.js';

/** How long a host whose TLS failed is sent to in clear at once before TLS is tried again. */
export const TLS_FALLBACK_HOLD_MS = 10 * 60_000;
/** Hosts remembered at most (the oldest, the first to expire, go first). */
export const TLS_FALLBACK_MAX_HOSTS = 4096;

/**
 * Only plain opportunistic TLS may fall back to clear. Each excluded case demands TLS:
 * 'required' and 'implicit' (a route, the smarthost, a shaping site's `tls`, or what an
 * enforcing MTA-STS policy or REQUIRETLS made of the destination, tls-policy.ts), an enforcing
 * policy, DANE (its TLSA records say TLS is there), and credentials (AUTH only over verified
 * TLS: in clear the login fails anyway, and remembering the host would hold it in clear).
 */
export function tlsFallbackAllowed(o: { tlsPolicy: TlsPolicy; tlsAuth?: TlsAuth | undefined; auth?: unknown }): boolean {
  if (o.tlsPolicy !== 'opportunistic' || o.auth !== undefined) return false;
  return o.tlsAuth === undefined || (!o.tlsAuth.enforce && o.tlsAuth.type !== 'tlsa');
}

/** The key of one host: its address when known (an MX host), else its name (a route), and the port. */
export function tlsFallbackKey(host: string, port: number, address?: string): string {
  return `${address ?? host.toLowerCase()}:${port}`;
}

/**
 * The hosts held in clear, each until a time. A Map in insertion order: every entry lives the
 * same TLS_FALLBACK_HOLD_MS, so the first key is always the first to expire, and at the bound
 * it is the one dropped.
 */
export class TlsFallback {
  readonly #until = new Map<string, number>();
  readonly #holdMs: number;
  readonly #max: number;

  constructor(o: { holdMs?: number; maxHosts?: number } = {}) {
    this.#holdMs = o.holdMs ?? TLS_FALLBACK_HOLD_MS;
    this.#max = o.maxHosts ?? TLS_FALLBACK_MAX_HOSTS;
  }

  get size(): number {
    return this.#until.size;
  }

  /** Is this host held in clear at `now`? An expired entry is dropped. */
  held(key: string, now: number): boolean {
    const until = this.#until.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.#until.delete(key);
    return false;
  }

  /**
   * Hold the host in clear from `now`; returns the time it ends, or null when it was held
   * already (several connections failed at once: the first one counts, so it is logged once).
   */
  hold(key: string, now: number): number | null {
    if (this.held(key, now)) return null;
    const until = now + this.#holdMs;
    this.#until.set(key, until);
    while (this.#until.size > this.#max) this.#until.delete(this.#until.keys().next().value!);
    return until;
  }
}
