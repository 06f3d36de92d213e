// Warm-up day counts shared by the nodes of a cluster (docs/scale-out.md): one Redis counter per
// UTC day and source × site, INCRed by each node's admitted message and expiring two days after
// the day it counts, so a warming-up address gets its day's budget once for the whole cluster,
// not once per node. Redis away: null, and each node's own count (persisted in its LMDB) decides.
import { createHash } from 'node:crypto';
import type { SharedWarmup } from '../delivery/shaping/shaper.js';
import type { RedisLink } from './redis-link.js';

const DAY_MS = 86_400_000;
/** Keys longer than this are hashed (a site key can hold MX host names). */
const MAX_KEY_PART = 200;

export class SharedWarmupCounts implements SharedWarmup {
  readonly #link: RedisLink;
  readonly #prefix: string;

  constructor(o: { link: RedisLink; prefix: string }) {
    this.#link = o.link;
    this.#prefix = `${o.prefix}warmup:`;
  }

  async add(day: number, key: string, delta: 1 | -1): Promise<number | null> {
    const part = key.length > MAX_KEY_PART ? createHash('sha1').update(key).digest('hex') : key.replace(/\s/g, '_');
    const k = `${this.#prefix}${day}:${part}`;
    const expireAt = (day + 2) * DAY_MS;
    const r = await this.#link.call((redis) => redis.multi().incrby(k, delta).pexpireat(k, expireAt).exec());
    if (!r.ok || r.value === null) return null;
    const [err, n] = r.value[0] ?? [null, null];
    return err === null && typeof n === 'number' && Number.isSafeInteger(n) ? Math.max(0, n) : null;
  }
}
