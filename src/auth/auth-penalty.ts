// AUTH failure back-off, per client and per user name (as Postfix's anvil and Dovecot's auth
// penalty), in two bounded LRU tables: after n failures each further attempt waits 2^n s
// (Dovecot's curve) up to maxDelayMs; at the threshold AUTH is refused (454 4.7.0) until
// lockoutMs after the last failure. Names are counted known or not (no existence oracle).
// With a cluster (POSTERN_REDIS_URL) the client counts are shared: each node adds its failures
// to a count in Redis and reads it before an attempt (docs/scale-out.md).
// docs/auth.md says why each rule is as it is.

export interface AuthPenaltyOptions {
  /** Failures (with attempts in flight) from one client before 454. */
  maxFailures: number;
  /** Failures against one user name, from anywhere, before 454 (but from its known clients). */
  userMaxFailures: number;
  /** A count is forgotten this long after its last failure. */
  lockoutMs: number;
  /** Cap of the delay before an attempt; 0 = no delay. */
  maxDelayMs: number;
  /** The cluster's failure counts per client (cluster/shared-auth-failures.ts); without it the counts are this node's. */
  shared?: SharedAuthFailures;
  /** Entries per table (least recently used dropped first). */
  maxEntries?: number;
  now?: () => number;
}

/**
 * Failures per client counted by every node of a cluster, forgotten `lockoutMs` after the last
 * one. Never waits on Redis: down or slow, `failures` answers 0 and this node's own count decides.
 */
export interface SharedAuthFailures {
  failures(client: string): Promise<number>;
  failed(client: string, lockoutMs: number): void;
  succeeded(client: string): void;
}

/** Per-client and per-user state. */
interface Entry {
  failures: number;
  /** Attempts begun and not yet settled. */
  inFlight: number;
  lastFailure: number;
  /** Users only: clients this user logged in from (most recent last, a few at most). */
  known?: string[];
}

export type AuthAdmission =
  | { refused: true }
  | {
      refused: false;
      /** Wait this long before checking the password. */
      delayMs: number;
      /** Called exactly once: 'ok' and 'bad' are checked outcomes; 'void' checked nothing. */
      settle(outcome: 'ok' | 'bad' | 'void'): void;
    };

const DEFAULT_MAX_ENTRIES = 10_000;
const KNOWN_PER_USER = 8;

/** Dovecot's curve: 2 s after one failure, doubling, capped. */
export function penaltyDelayMs(failures: number, maxDelayMs: number): number {
  if (failures <= 0) return 0;
  return Math.min(1000 * 2 ** Math.min(failures, 20), maxDelayMs);
}

class LruTable {
  readonly #map = new Map<string, Entry>();
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }
  get size(): number {
    return this.#map.size;
  }
  /** The entry for `key`, moved to the recent end; created when `create`. */
  get(key: string, create: boolean): Entry | undefined {
    let e = this.#map.get(key);
    if (e !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, e);
      return e;
    }
    if (!create) return undefined;
    e = { failures: 0, inFlight: 0, lastFailure: 0 };
    this.#map.set(key, e);
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value as string);
    return e;
  }
  /** Drops an entry that holds nothing any more. */
  prune(key: string, e: Entry): void {
    if (e.failures === 0 && e.inFlight === 0 && (e.known === undefined || e.known.length === 0) && this.#map.get(key) === e) this.#map.delete(key);
  }
}

/**
 * The two counts. Attempts in flight count as failures until they end, so a burst of parallel
 * connections gets no more guesses than the threshold. A success clears its client's count,
 * not the user's (the owner logging in must not reset an attack on the name from elsewhere);
 * instead the clients a user logged in from are not held to the user's count, so the
 * attacker cannot lock the owner out of their usual places.
 */
export class AuthPenalty {
  readonly #o: Required<Omit<AuthPenaltyOptions, 'shared'>> & Pick<AuthPenaltyOptions, 'shared'>;
  readonly #clients: LruTable;
  readonly #users: LruTable;

  constructor(o: AuthPenaltyOptions) {
    this.#o = { maxEntries: DEFAULT_MAX_ENTRIES, now: Date.now, ...o };
    this.#clients = new LruTable(this.#o.maxEntries);
    this.#users = new LruTable(this.#o.maxEntries);
  }

  /** Entries held (clients, users), for tests. */
  get sizes(): { clients: number; users: number } {
    return { clients: this.#clients.size, users: this.#users.size };
  }

  #decay(e: Entry, now: number): void {
    if (e.failures > 0 && now - e.lastFailure >= this.#o.lockoutMs) e.failures = 0;
  }

  /** The cluster's failures of `client` (0 without a cluster, or when Redis is away): ask before begin(). */
  async clusterFailures(client: string, clientExempt: boolean): Promise<number> {
    return clientExempt || !this.#o.shared ? 0 : this.#o.shared.failures(client);
  }

  /**
   * An AUTH attempt by `client` as `user` is about to be checked. `clientExempt`: the client
   * is in the trusted networks (a webmail or gateway logs many users in from one address), so
   * only the user's count applies. `clusterFailures`: the client's failures on all nodes
   * (clusterFailures()), which count when more than this node's.
   */
  begin(client: string, user: string, clientExempt: boolean, clusterFailures = 0): AuthAdmission {
    const now = this.#o.now();
    const c = clientExempt ? undefined : this.#clients.get(client, true)!;
    const u = this.#users.get(user, true)!;
    if (c !== undefined) this.#decay(c, now);
    this.#decay(u, now);
    const knownClient = u.known?.includes(client) === true;
    const cCount = c === undefined ? 0 : Math.max(c.failures, clusterFailures) + c.inFlight;
    const uCount = knownClient ? 0 : u.failures + u.inFlight;
    if (cCount >= this.#o.maxFailures || uCount >= this.#o.userMaxFailures) {
      if (c !== undefined) this.#clients.prune(client, c);
      this.#users.prune(user, u);
      return { refused: true };
    }
    const delayMs = penaltyDelayMs(Math.max(cCount, uCount), this.#o.maxDelayMs);
    if (c !== undefined) c.inFlight++;
    u.inFlight++;
    let settled = false;
    return {
      refused: false,
      delayMs,
      settle: (outcome) => {
        if (settled) return;
        settled = true;
        const t = this.#o.now();
        if (c !== undefined) c.inFlight--;
        u.inFlight--;
        if (outcome === 'bad') {
          if (c !== undefined) {
            this.#decay(c, t);
            c.failures++;
            c.lastFailure = t;
            this.#o.shared?.failed(client, this.#o.lockoutMs);
          }
          this.#decay(u, t);
          u.failures++;
          u.lastFailure = t;
        } else if (outcome === 'ok') {
          if (c !== undefined) {
            c.failures = 0;
            this.#o.shared?.succeeded(client);
          }
          const known = (u.known ??= []);
          const i = known.indexOf(client);
          if (i >= 0) known.splice(i, 1);
          known.push(client);
          if (known.length > KNOWN_PER_USER) known.shift();
        }
        if (c !== undefined) this.#clients.prune(client, c);
        this.#users.prune(user, u);
      },
    };
  }
}
