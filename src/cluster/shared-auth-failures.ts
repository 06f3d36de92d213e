// AUTH failure counts per client address shared by the nodes of a cluster (docs/scale-out.md):
// one Redis counter per client (an IPv4 address or an IPv6 prefix, as auth/auth-penalty.ts
// keys them), incremented by each node's failures and expiring POSTERN_AUTH_LOCKOUT_MS after
// the last, so a guesser spread over the nodes behind a load balancer gets the threshold once,
// not once per node. Redis down or slow: each node's own count decides.
import type { SharedAuthFailures } from '../auth/auth-penalty.js';
import type { RedisLink } from './redis-link.js';

export class SharedAuthCounts implements SharedAuthFailures {
  readonly #link: RedisLink;
  readonly #prefix: string;

  constructor(o: { link: RedisLink; prefix: string }) {
    this.#link = o.link;
    this.#prefix = `${o.prefix}auth:`;
  }

  async failures(client: string): Promise<number> {
    const r = await this.#link.call((redis) => redis.get(this.#prefix + client));
    if (!r.ok || r.value === null) return 0;
    const n = Number(r.value);
    // Another node wrote it, and Redis is shared: a count, or nothing.
    return Number.isSafeInteger(n) && n > 0 ? n : 0;
  }

  failed(client: string, lockoutMs: number): void {
    const key = this.#prefix + client;
    // One round trip, not awaited: INCR and the TTL moved to lockoutMs after this failure.
    void this.#link.call((redis) => redis.multi().incr(key).pexpire(key, lockoutMs).exec());
  }

  succeeded(client: string): void {
    void this.#link.call((redis) => redis.del(this.#prefix + client));
  }
}
