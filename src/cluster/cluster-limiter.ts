// Cluster-wide limits of each source × site (docs/scale-out.md "Shared state in Redis"): the
// rate as GCRA in Redis (one atomic script per message, Redis's clock, so `10/s` is ten a
// second for all nodes together) and the connections as leases with a TTL (a dead node's are
// given back when they expire), taken by the same script in the same round trip. Each node
// announces itself with a heartbeat; while Redis is down or slow it decides alone, on its share
// of each limit: the cluster limit divided by the live nodes it last saw.
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { Throttle } from '../delivery/throttle.js';
import type { RedisLink } from './redis-link.js';

/**
 * KEYS[1] the site's GCRA time (µs, Redis's clock), KEYS[2] its lease set (member → expiry ms).
 * ARGV: interval µs (0: no rate), tolerance µs, max leases (0: none), member, lease ms.
 * Returns {1, 0}: go (a token taken, a lease held); {0, ms}: the rate says wait ms; {0, -1}: no lease free.
 * A refusal changes nothing, so asking again costs one round trip and no token.
 */
const ADMIT_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = now
if interval > 0 then
  local stored = redis.call('GET', KEYS[1])
  if stored then tat = math.max(tonumber(stored), now) end
  local early = tat - tonumber(ARGV[2]) - now
  if early > 0 then return {0, math.ceil(early / 1000)} end
end
local max = tonumber(ARGV[3])
if max > 0 then
  local nowms = math.floor(now / 1000)
  local lease = tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', nowms))
  if redis.call('ZCARD', KEYS[2]) >= max then return {0, -1} end
  redis.call('ZADD', KEYS[2], string.format('%.0f', nowms + lease), ARGV[4])
  redis.call('PEXPIRE', KEYS[2], lease * 2)
end
if interval > 0 then
  local nxt = tat + interval
  redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1000)
end
return {1, 0}
`;

/** KEYS[1] a lease set; ARGV[1] lease ms, ARGV[2] member: its expiry moved on (only if still held). */
const RENEW_LUA = `
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local n = redis.call('ZADD', KEYS[1], 'XX', 'CH', string.format('%.0f', nowms + lease), ARGV[2])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return n
`;

/** KEYS[1] the node set; ARGV[1] this node, ARGV[2] lease ms. Returns the live nodes. */
const HEARTBEAT_LUA = `
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', nowms))
redis.call('ZADD', KEYS[1], string.format('%.0f', nowms + lease), ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease * 2)
return redis.call('ZCARD', KEYS[1])
`;

interface ScriptedRedis extends Redis {
  posternAdmit(rateKey: string, connKey: string, interval: string, tolerance: string, max: string, member: string, leaseMs: string): Promise<[number, number]>;
  posternRenew(connKey: string, leaseMs: string, member: string): Promise<number>;
  posternHeartbeat(nodesKey: string, node: string, leaseMs: string): Promise<number>;
}

const defined = new WeakSet<Redis>();
function scripted(r: Redis): ScriptedRedis {
  if (!defined.has(r)) {
    // EVALSHA with a fallback to EVAL when the script cache is empty (a restarted Redis).
    r.defineCommand('posternAdmit', { numberOfKeys: 2, lua: ADMIT_LUA });
    r.defineCommand('posternRenew', { numberOfKeys: 1, lua: RENEW_LUA });
    r.defineCommand('posternHeartbeat', { numberOfKeys: 1, lua: HEARTBEAT_LUA });
    defined.add(r);
  }
  return r as ScriptedRedis;
}

/** The limits of one source × site, as the shaper has them: messages per ms (null: none) and connections. */
export interface ClusterLimits {
  rate: number | null;
  maxConnections: number;
}

/** Admitted (release() once the transaction ends), or refused for `waitMs` (ask again then). `shared`: Redis decided. */
export type ClusterAdmitResult = { ok: true; shared: boolean; release: () => void } | { ok: false; shared: boolean; waitMs: number };

/** How long a refusal for want of a free lease waits before asking again (a lease has no "free at"). */
export const LEASE_POLL_MS = 100;
/** Local shares kept before idle ones are swept. */
const SWEEP_AT = 4096;
/** Keys longer than this are hashed (a site key holds MX host names). */
const MAX_KEY_PART = 200;

export interface ClusterLimiterOptions {
  link: RedisLink;
  prefix: string;
  /** Unique in the cluster: host, pid and start time. */
  nodeId: string;
  leaseMs: number;
  log?: Logger;
  now?: () => number;
}

/** This node's share of one key while Redis is away. */
interface LocalShare {
  throttle: Throttle | null;
  rate: number | null;
  nodes: number;
  inflight: number;
}

export class ClusterLimiter {
  readonly #o: ClusterLimiterOptions;
  readonly #now: () => number;
  /** Leases held in Redis: member → lease-set key (renewed until released). */
  readonly #held = new Map<string, string>();
  readonly #local = new Map<string, LocalShare>();
  #seq = 0;
  #timer: NodeJS.Timeout | null = null;
  #liveNodes = 1;
  #closed = false;
  /** Admissions decided by Redis and by this node alone, for tests and /metrics. */
  readonly counts = { shared: 0, local: 0 };

  constructor(o: ClusterLimiterOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** The live nodes this node last saw (itself included; 1 before the first heartbeat). */
  get liveNodes(): number {
    return this.#liveNodes;
  }

  /** Leases this node holds in Redis now. */
  get heldLeases(): number {
    return this.#held.size;
  }

  /** Heartbeat and lease renewal, every third of the lease (at most every second). */
  start(): void {
    const every = Math.max(100, Math.min(1000, Math.floor(this.#o.leaseMs / 3)));
    this.#timer = setInterval(() => void this.#tick(), every).unref();
    void this.#tick();
  }

  async admit(site: string, limits: ClusterLimits): Promise<ClusterAdmitResult> {
    const finite = Number.isFinite(limits.maxConnections);
    if (limits.rate === null && !finite) return { ok: true, shared: false, release: () => {} };
    const base = this.#key(site);
    const member = `${this.#o.nodeId}:${(++this.#seq).toString(36)}`;
    const interval = limits.rate === null ? 0 : Math.max(1, Math.round(1000 / limits.rate)); // µs
    const r = await this.#o.link.call((redis) =>
      scripted(redis).posternAdmit(`${base}:rate`, `${base}:conn`, String(interval), '0', finite ? String(limits.maxConnections) : '0', member, String(this.#o.leaseMs)),
    );
    if (r.ok) {
      this.counts.shared++;
      const [go, wait] = r.value;
      if (go !== 1) return { ok: false, shared: true, waitMs: wait < 0 ? LEASE_POLL_MS : Math.max(1, wait) };
      if (!finite) return { ok: true, shared: true, release: () => {} };
      const connKey = `${base}:conn`;
      this.#held.set(member, connKey);
      let done = false;
      return {
        ok: true,
        shared: true,
        release: () => {
          if (done) return;
          done = true;
          this.#held.delete(member);
          // Not awaited: a release that fails expires with the lease.
          void this.#o.link.call((redis) => redis.zrem(connKey, member));
        },
      };
    }
    this.counts.local++;
    return this.#admitLocal(site, limits);
  }

  /** Stop renewing; give back what this node holds and leave the node set (best effort, bounded). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    const held = [...this.#held];
    this.#held.clear();
    await this.#o.link.call(async (redis) => {
      const p = redis.pipeline();
      for (const [member, key] of held) p.zrem(key, member);
      p.zrem(`${this.#o.prefix}nodes`, this.#o.nodeId);
      await p.exec();
    });
  }

  /** The cluster limit divided by the live nodes last seen; a connection share is at least 1. */
  #admitLocal(site: string, limits: ClusterLimits): ClusterAdmitResult {
    const nodes = Math.max(1, this.#liveNodes);
    let s = this.#local.get(site);
    if (!s || s.rate !== limits.rate || s.nodes !== nodes) {
      if (this.#local.size >= SWEEP_AT) this.#sweep();
      s = { throttle: limits.rate === null ? null : new Throttle(limits.rate / nodes), rate: limits.rate, nodes, inflight: s?.inflight ?? 0 };
      this.#local.set(site, s);
    }
    if (Number.isFinite(limits.maxConnections) && s.inflight >= Math.max(1, Math.floor(limits.maxConnections / nodes))) return { ok: false, shared: false, waitMs: LEASE_POLL_MS };
    const wait = s.throttle?.take(this.#now()) ?? 0;
    if (wait > 0) return { ok: false, shared: false, waitMs: wait };
    s.inflight++;
    const share = s;
    let done = false;
    return {
      ok: true,
      shared: false,
      release: () => {
        if (done) return;
        done = true;
        share.inflight--;
      },
    };
  }

  #sweep(): void {
    const now = this.#now();
    for (const [k, s] of this.#local) if (s.inflight === 0 && (s.throttle?.idle(now) ?? true)) this.#local.delete(k);
  }

  /** `prefix{site}`: the braces keep a site's keys in one Redis Cluster slot (one script touches both). */
  #key(site: string): string {
    const clean = site.replace(/[{}\s]/g, '_');
    const part = clean.length > MAX_KEY_PART ? createHash('sha1').update(site).digest('hex') : clean;
    return `${this.#o.prefix}{${part}}`;
  }

  async #tick(): Promise<void> {
    if (this.#closed || !this.#o.link.up) return;
    const leaseMs = String(this.#o.leaseMs);
    const held = [...this.#held];
    const r = await this.#o.link.call(async (redis) => {
      const s = scripted(redis);
      const p = s.pipeline() as unknown as ReturnType<Redis['pipeline']> & { posternHeartbeat(k: string, n: string, l: string): unknown; posternRenew(k: string, l: string, m: string): unknown };
      p.posternHeartbeat(`${this.#o.prefix}nodes`, this.#o.nodeId, leaseMs);
      for (const [member, key] of held) p.posternRenew(key, leaseMs, member);
      return p.exec();
    });
    if (!r.ok || r.value === null) return;
    const [err, n] = r.value[0] ?? [null, null];
    if (err === null && typeof n === 'number' && n >= 1) this.#liveNodes = n;
  }
}
