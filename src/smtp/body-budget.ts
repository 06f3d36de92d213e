// The memory all SMTP sessions may hold in message bodies at once (POSTERN_MAX_BODY_MEMORY).
// A body is held in memory from its first byte until its commit (or refusal) has been
// answered, so without a bound memory grows with sessions × message size: 2,000 connections
// could hold 2,000 × POSTERN_MAX_MESSAGE_BYTES. Bytes are counted as they are read; a session
// that has taken the total past the bound stops reading its socket (TCP flow control holds the
// client back, its data deadline stopped) until bodies ahead of it are done, so the bound is
// passed by at most one socket read per session; the session that began its body first always
// goes on, so one message of the largest size is always accepted and the sessions cannot block
// each other for good. Sessions wake in the order they began to wait.

/** Whoever holds body bytes: a session (anything with identity). */
export type BodyHolder = object;

export interface BodyBudgetStats {
  /** Bytes held now (received message data of bodies not yet answered). */
  held: number;
  /** The most ever held at once. */
  peak: number;
  /** Sessions waiting for room now. */
  waiting: number;
  /** Times a session had to wait. */
  waits: number;
}

export class BodyBudget {
  readonly limit: number;
  #held = 0;
  #peak = 0;
  #waits = 0;
  /** Holders in the order their bodies began (Map keeps insertion order): the first always may go on. */
  readonly #holders = new Map<BodyHolder, number>();
  /** Waiting holders in the order they began to wait, with what wakes them. */
  readonly #waiting = new Map<BodyHolder, () => void>();

  constructor(limitBytes: number) {
    this.limit = limitBytes;
  }

  /** `who` has taken in `bytes` more of its body (counted whatever the room: they are in memory). */
  add(who: BodyHolder, bytes: number): void {
    if (bytes <= 0) return;
    this.#holders.set(who, (this.#holders.get(who) ?? 0) + bytes);
    this.#held += bytes;
    if (this.#held > this.#peak) this.#peak = this.#held;
  }

  /** May `who` read more of its body now: there is room, or its body began first of all held. */
  mayGoOn(who: BodyHolder): boolean {
    return this.#held <= this.limit || this.#isFirst(who);
  }

  /**
   * `wake` is called once, when `who` may have room (ask mayGoOn() again then). `first`: this
   * is a new wait, not one taken up again after a wake-up that found no room (counted in waits).
   */
  wait(who: BodyHolder, wake: () => void, first = true): void {
    if (first) this.#waits++;
    this.#waiting.set(who, wake);
  }

  /** The body of `who` is answered (or gone with its session): its bytes are free again. */
  release(who: BodyHolder): void {
    this.#waiting.delete(who);
    const mine = this.#holders.get(who);
    if (mine === undefined) return;
    this.#holders.delete(who);
    this.#held -= mine;
    this.#wakeAll();
  }

  stats(): BodyBudgetStats {
    return { held: this.#held, peak: this.#peak, waiting: this.#waiting.size, waits: this.#waits };
  }

  #isFirst(who: BodyHolder): boolean {
    for (const first of this.#holders.keys()) return first === who;
    return false;
  }

  /**
   * Within the bound every waiter tries again, oldest first (one that finds no room waits
   * again); past it only the holder of the first body may go on, so only it is woken.
   */
  #wakeAll(): void {
    if (this.#waiting.size === 0) return;
    if (this.#held > this.limit) {
      for (const first of this.#holders.keys()) {
        const wake = this.#waiting.get(first);
        if (wake !== undefined) {
          this.#waiting.delete(first);
          wake();
        }
        break;
      }
      return;
    }
    const woken = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const wake of woken) wake();
  }
}
