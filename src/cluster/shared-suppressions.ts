// The suppression list shared by the nodes of a cluster (docs/scale-out.md): every add and
// remove of a node's list (queue/suppressions.ts, the durable copy) is copied to one Redis hash,
// and before a message is delivered the recipients its own list lets through are looked up
// there in one round trip; one found is refused and kept in the local list too, so it stays
// refused when Redis is away. Redis down or slow: the local list alone decides.
import type { Logger } from '../log/logger.js';
import { normalizeSuppressed, type SuppressionList, type SuppressionMirror } from '../queue/suppressions.js';
import type { RedisLink } from './redis-link.js';

/** Recipients looked up in one HMGET at most (a message has at most POSTERN_MAX_RECIPIENTS). */
const MAX_LOOKUP = 1000;

export class SharedSuppressions implements SuppressionMirror {
  readonly #link: RedisLink;
  readonly #key: string;
  readonly #list: SuppressionList;
  readonly #log: Logger | undefined;
  /** Lookups answered by Redis, and copies taken into the local list, for tests and /metrics. */
  readonly counts = { lookups: 0, copied: 0 };

  constructor(o: { link: RedisLink; prefix: string; list: SuppressionList; log?: Logger }) {
    this.#link = o.link;
    this.#key = `${o.prefix}suppressions`;
    this.#list = o.list;
    this.#log = o.log;
  }

  added(address: string, value: string): void {
    void this.#link.call((r) => r.hset(this.#key, address, value)).then((res) => {
      if (!res.ok) this.#log?.warn({ address, err: res.error.message }, 'suppression not copied to redis: only this node refuses it until it is added again');
    });
  }

  removed(address: string): void {
    void this.#link.call((r) => r.hdel(this.#key, address)).then((res) => {
      if (!res.ok) this.#log?.warn({ address, err: res.error.message }, 'suppression removal not copied to redis: the other nodes still refuse the address');
    });
  }

  /** The addresses (as given) another node suppressed; empty when Redis is away. */
  async suppressed(addresses: readonly string[]): Promise<ReadonlySet<string>> {
    const keys: string[] = [];
    const byKey = new Map<string, string[]>();
    for (const a of addresses.slice(0, MAX_LOOKUP)) {
      const k = normalizeSuppressed(a);
      if (k === null) continue;
      const list = byKey.get(k);
      if (list) list.push(a);
      else {
        byKey.set(k, [a]);
        keys.push(k);
      }
    }
    if (keys.length === 0) return new Set();
    const r = await this.#link.call((redis) => redis.hmget(this.#key, ...keys));
    if (!r.ok) return new Set();
    this.counts.lookups++;
    const out = new Set<string>();
    for (let i = 0; i < keys.length; i++) {
      const raw = r.value[i];
      if (raw === null || raw === undefined) continue;
      for (const a of byKey.get(keys[i]!)!) out.add(a);
      const v = parse(raw);
      // The local list keeps a copy: refused here too while Redis is away.
      this.counts.copied++;
      await this.#list.add(keys[i]!, v.reason ?? undefined, { ...(v.addedAt !== undefined ? { addedAt: v.addedAt } : {}), mirror: false }).catch((err: unknown) => {
        this.#log?.warn({ err, address: keys[i] }, 'suppression from redis not kept locally');
      });
    }
    return out;
  }
}

/** Another node's JSON text: hostile until checked (Redis is shared). */
function parse(raw: string): { reason: string | null; addedAt?: number } {
  try {
    const v = JSON.parse(raw) as { reason?: unknown; added_at?: unknown };
    const reason = typeof v.reason === 'string' ? v.reason.slice(0, 1000) : null;
    return typeof v.added_at === 'number' && Number.isFinite(v.added_at) && v.added_at >= 0 ? { reason, addedAt: v.added_at } : { reason };
  } catch {
    return { reason: null };
  }
}
