// The memory all SMTP sessions may hold in message bodies at once (POSTERN_MAX_BODY_MEMORY),
// and each client's share of it (POSTERN_MAX_BODY_MEMORY_PER_CLIENT). A body is held in memory
// from its first byte until its commit (or refusal) has been answered, so without a bound
// memory grows with sessions × message size. Bytes are counted as they are read; a session
// that has taken the total past the bound, or its client past its share, stops reading its
// socket (TCP flow control holds the client back) until bodies ahead of it are done, so each
// bound is passed by at most one socket read per session. The body begun first of all always
// goes on (one message of the largest size is always accepted; the sessions cannot block each
// other for good), and so does each client's body begun first while the total has room. Waiters
// wake in the order they began to wait.
//
//   #holders, in the order bodies began        #clients (share 2 MiB here)
//   s1  192.0.2.7     first of all: goes on    "192.0.2.7"      3 MiB  {s1, s4}  past its share
//   s2  10.0.0.5      trusted: in no share     "2001:db8::/64"  1 MiB  {s3}
//   s3  2001:db8::5
//   s4  192.0.2.7     not its client's first: waits, however much room the total has

/**
 * Whoever holds body bytes: a session. Its client is the key of the per-client connection
 * limit (an address, or an IPv6 prefix); a trusted holder (POSTERN_TRUSTED_NETWORKS) has no
 * share to keep to, as it has no per-client connection limit.
 */
export interface BodyHolder {
  readonly clientKey: string;
  readonly trusted: boolean;
}

export interface BodyBudgetStats {
  /** Bytes held now (received message data of bodies not yet answered). */
  held: number;
  /** The most ever held at once. */
  peak: number;
  /** Sessions waiting for room now. */
  waiting: number;
  /** Times a session had to wait (for the total's room or its client's share). */
  waits: number;
  /** Of those, the times the total had room but the session's client was past its share. */
  shareWaits: number;
  /** Clients (outside the trusted networks) holding body bytes now. */
  clients: number;
}

/** One client's bytes and its holders in the order their bodies began (a Set keeps insertion order). */
interface ClientShare {
  readonly key: string;
  held: number;
  readonly holders: Set<BodyHolder>;
}

/** What one holder holds, and the share it counts in (fixed at its first byte; null: trusted). */
interface Held {
  bytes: number;
  readonly share: ClientShare | null;
}

export class BodyBudget {
  readonly limit: number;
  readonly perClient: number;
  #held = 0;
  #peak = 0;
  #waits = 0;
  #shareWaits = 0;
  /** Holders in the order their bodies began (Map keeps insertion order): the first always may go on. */
  readonly #holders = new Map<BodyHolder, Held>();
  /** Clients holding bytes now, by key. */
  readonly #clients = new Map<string, ClientShare>();
  /** Waiting holders in the order they began to wait, with what wakes them. */
  readonly #waiting = new Map<BodyHolder, () => void>();

  /** perClientBytes: each untrusted client's share (the whole limit when left out: no share). */
  constructor(limitBytes: number, perClientBytes = limitBytes) {
    this.limit = limitBytes;
    this.perClient = perClientBytes;
  }

  /** `who` has taken in `bytes` more of its body (counted whatever the room: they are in memory). */
  add(who: BodyHolder, bytes: number): void {
    if (bytes <= 0) return;
    let h = this.#holders.get(who);
    if (h === undefined) this.#holders.set(who, (h = { bytes: 0, share: this.#shareOf(who) }));
    h.bytes += bytes;
    this.#held += bytes;
    if (this.#held > this.#peak) this.#peak = this.#held;
    if (h.share !== null) h.share.held += bytes;
  }

  /**
   * May `who` read more of its body now: the total has room or its body began first of all
   * held; and its client is within its share, or this is the client's body begun first.
   */
  mayGoOn(who: BodyHolder): boolean {
    return this.#withinLimit(who) && this.#withinShare(who);
  }

  /**
   * `wake` is called once, when `who` may have room (ask mayGoOn() again then). `first`: this
   * is a new wait, not one taken up again after a wake-up that found no room (counted in waits).
   */
  wait(who: BodyHolder, wake: () => void, first = true): void {
    if (first) {
      this.#waits++;
      if (this.#withinLimit(who) && !this.#withinShare(who)) this.#shareWaits++;
    }
    this.#waiting.set(who, wake);
  }

  /** The body of `who` is answered (or gone with its session): its bytes are free again. */
  release(who: BodyHolder): void {
    this.#waiting.delete(who);
    const h = this.#holders.get(who);
    if (h === undefined) return;
    this.#holders.delete(who);
    this.#held -= h.bytes;
    const c = h.share;
    if (c !== null) {
      c.held -= h.bytes;
      c.holders.delete(who);
      if (c.holders.size === 0) this.#clients.delete(c.key);
    }
    this.#wake();
  }

  stats(): BodyBudgetStats {
    return { held: this.#held, peak: this.#peak, waiting: this.#waiting.size, waits: this.#waits, shareWaits: this.#shareWaits, clients: this.#clients.size };
  }

  #withinLimit(who: BodyHolder): boolean {
    if (this.#held <= this.limit) return true;
    for (const first of this.#holders.keys()) return first === who;
    return false;
  }

  #withinShare(who: BodyHolder): boolean {
    if (who.trusted) return true;
    const c = this.#holders.get(who)?.share ?? this.#clients.get(who.clientKey);
    if (c === undefined || c.held <= this.perClient) return true;
    for (const first of c.holders) return first === who;
    return false;
  }

  /** The share `who` counts in from its first byte on (made when its client holds nothing yet); null: trusted. */
  #shareOf(who: BodyHolder): ClientShare | null {
    if (who.trusted) return null;
    let c = this.#clients.get(who.clientKey);
    if (c === undefined) this.#clients.set(who.clientKey, (c = { key: who.clientKey, held: 0, holders: new Set() }));
    c.holders.add(who);
    return c;
  }

  /**
   * Wake, oldest first, every waiter that may go on now (one that finds no room when its turn
   * comes waits again). Past the total's bound only the holder of the first body may, so only
   * it is looked at; within it, a waiter held back by its client's share stays asleep until a
   * body of its client is answered (a client's many waiting sessions cost a check each, no
   * wake-up).
   */
  #wake(): void {
    if (this.#waiting.size === 0) return;
    if (this.#held > this.limit) {
      for (const first of this.#holders.keys()) {
        // The first body is its client's first too: within its share.
        const wake = this.#waiting.get(first);
        if (wake !== undefined) {
          this.#waiting.delete(first);
          wake();
        }
        break;
      }
      return;
    }
    const woken: Array<() => void> = [];
    for (const [who, wake] of this.#waiting) {
      if (!this.#withinShare(who)) continue;
      this.#waiting.delete(who); // deleting the entry being visited is safe in a Map iteration
      woken.push(wake);
    }
    for (const wake of woken) wake();
  }
}
