// The limits of one source × site as they stand now: a concurrency window and a rate, each
// lowered multiplicatively when the site throttles and raised additively while there is mail
// waiting and the site stays quiet (AIMD, as TCP and Postfix's destination concurrency
// feedback; docs/shaping.md). A transaction is admitted by the rate first (a FIFO paced by one
// timer), then by a slot of the window, so a rate-limited site does not look short of slots.
//
//   admit() ──► rate pacer (FIFO, one timer, next slot at #nextAt) ──► slot (inflight < window)
//                   ▲ rate × RATE_DECREASE on throttle-rate          ▲ window × CONN_DECREASE on
//                   └ + step/s while waiting and quiet                 throttle-connection, + 1 per
//                                                                      CONN_PROBE_MS while waiting

/** The ceilings the rules give (never exceeded) and whether the AIMD runs at all. */
export interface SiteCeilings {
  /** Concurrent transactions; Infinity: not limited here (maildir, webhook). */
  maxConnections: number;
  /** Messages per ms; null: unlimited until the site throttles. */
  rate: number | null;
  adaptive: boolean;
}

/** Rate decrease factor on a throttle-rate reply (applied at most once per RATE_HOLD_MS). */
export const RATE_DECREASE = 0.7;
/** Concurrency decrease factor on a throttle-connection reply (at most once per CONN_HOLD_MS). */
export const CONN_DECREASE = 0.5;
/** A burst of throttles from one overshoot is one signal: one decrease per hold. */
export const RATE_HOLD_MS = 1000;
export const CONN_HOLD_MS = 1000;
/** The rate is raised once a second by this share of the rate set at the last decrease. */
export const RATE_STEP = 0.1;
/** One more connection is tried at most this often, and only this long after the last refusal. */
export const CONN_PROBE_MS = 5000;
/** The lowest rate adaptation goes to: one message a minute. */
export const MIN_RATE = 1 / 60_000;
/** After this long without a throttle the learned limits are dropped: back to the ceilings. */
export const FORGET_MS = 10 * 60_000;
/** A deferral for throttling comes back no sooner than this, and no later than MAX_RETRY_MS. */
export const MIN_RETRY_MS = 1000;
export const MAX_RETRY_MS = 5 * 60_000;
/**
 * A transaction waits for the pacer or a slot only this long (expected) and only behind this
 * many others; past either it is 'busy' and deferred untried, to come back paced. Waiting holds
 * a message's lease (minutes: past it the queue hands the message out again, and it would be
 * sent twice) and one of POSTERN_DELIVERY_CONCURRENCY's slots (which other sites need).
 */
export const MAX_WAIT_MS = 10_000;
export const MAX_WAITERS = 100;

/** 'go': start the transaction (leave() after it); 'busy': defer it; 'closed': shutting down. */
export type Admit = 'go' | 'busy' | 'closed';

type Waiter = (go: boolean) => void;

/** Events (successes, admissions) over the last second, in ten 100 ms buckets. */
class SuccessWindow {
  readonly #buckets = new Float64Array(10);
  #at = 0;

  add(now: number): void {
    this.#advance(now);
    this.#buckets[Math.floor(now / 100) % 10]!++;
  }

  /** Successes per ms over the last second. */
  rate(now: number): number {
    this.#advance(now);
    let n = 0;
    for (const b of this.#buckets) n += b;
    return n / 1000;
  }

  #advance(now: number): void {
    const slot = Math.floor(now / 100);
    if (slot - this.#at >= 10) this.#buckets.fill(0);
    else for (let s = this.#at + 1; s <= slot; s++) this.#buckets[s % 10] = 0;
    if (slot > this.#at) this.#at = slot;
  }
}

export class SiteState {
  readonly key: string;
  #ceil: SiteCeilings;
  readonly #now: () => number;
  /** Concurrency window (may be fractional; floor() slots are usable). */
  window: number;
  /** Current rate in messages per ms; null: unlimited. */
  rate: number | null;
  inflight = 0;
  suspendedUntil = 0;
  /** Why it was last suspended ('blocklist' or 'pattern') and the reply that did it (for /v1/stats). */
  suspendedFor: { reason: string; reply: string } | null = null;
  /** Transactions admitted since the state was made (for /v1/stats: the most active first). */
  admitted = 0;
  #rateAtDecrease = 0;
  #lastRateDecrease = -Infinity;
  #lastRateThrottle = -Infinity;
  #lastRateIncrease = -Infinity;
  #lastConnDecrease = -Infinity;
  #lastConnThrottle = -Infinity;
  #lastConnIncrease = -Infinity;
  #slotDemandAt = -Infinity;
  #rateDemandAt = -Infinity;
  #nextAt = -Infinity;
  #nextRetry = -Infinity;
  #timer: NodeJS.Timeout | null = null;
  readonly #rateQ: Waiter[] = [];
  readonly #slotQ: Waiter[] = [];
  readonly #successes = new SuccessWindow();
  readonly #sent = new SuccessWindow();
  /** Throttling replies seen (for logs and tests). */
  throttles = 0;
  #closed = false;

  constructor(key: string, ceilings: SiteCeilings, now: () => number = Date.now) {
    this.key = key;
    this.#ceil = ceilings;
    this.#now = now;
    this.window = ceilings.maxConnections;
    this.rate = ceilings.rate;
  }

  get ceilings(): SiteCeilings {
    return this.#ceil;
  }

  /** New rules (the file was re-read): the learned limits are kept below the new ceilings. */
  setCeilings(c: SiteCeilings): void {
    const learnedRate = this.rate !== this.#ceil.rate;
    const learnedWindow = this.window !== this.#ceil.maxConnections;
    this.#ceil = c;
    this.window = learnedWindow && c.adaptive ? Math.min(this.window, c.maxConnections) : c.maxConnections;
    this.rate = learnedRate && c.adaptive && this.rate !== null ? (c.rate === null ? this.rate : Math.min(this.rate, c.rate)) : c.rate;
    this.#pumpSlots();
    this.#schedule();
  }

  /** Nothing waiting, nothing in flight, nothing learned: the state may be forgotten. */
  idle(now: number): boolean {
    return this.inflight === 0 && this.#rateQ.length === 0 && this.#slotQ.length === 0 && this.suspendedUntil <= now && this.#learnedForgotten(now);
  }

  get waiting(): number {
    return this.#rateQ.length + this.#slotQ.length;
  }

  async admit(): Promise<Admit> {
    const paced = await this.#pace();
    if (paced !== 'go') return paced;
    const slot = await this.#slot();
    if (slot === 'go') {
      this.#sent.add(this.#now());
      this.admitted++;
    }
    return slot;
  }

  leave(): void {
    this.inflight--;
    this.#pumpSlots();
  }

  /** Release every waiter with false (shutdown). */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    for (const w of this.#rateQ.splice(0)) w(false);
    for (const w of this.#slotQ.splice(0)) w(false);
  }

  onSuccess(now: number): void {
    this.#successes.add(now);
  }

  /** The site refused a connection as too many: lower the window (never below 1). */
  onConnectionThrottle(now: number): void {
    this.throttles++;
    this.#lastConnThrottle = now;
    if (!this.#ceil.adaptive) return;
    // What was open when it refused is evidence of what it allows: the others, at most.
    let w = Math.min(this.window, Math.max(1, this.inflight - 1));
    if (now - this.#lastConnDecrease >= CONN_HOLD_MS) {
      w = Math.min(w, this.window * CONN_DECREASE);
      this.#lastConnDecrease = now;
    }
    this.window = Math.max(1, Math.floor(w));
  }

  /**
   * The site refused a message as too fast: lower the rate. From no limit at all, the start is
   * what the site accepted over the last second (or, when it accepted nothing, what was sent).
   */
  onRateThrottle(now: number): void {
    this.throttles++;
    this.#lastRateThrottle = now;
    if (!this.#ceil.adaptive || now - this.#lastRateDecrease < RATE_HOLD_MS) return;
    this.#lastRateDecrease = now;
    const accepted = this.#successes.rate(now);
    const base = this.rate ?? (accepted > 0 ? accepted : this.#sent.rate(now));
    this.rate = Math.max(MIN_RATE, base * RATE_DECREASE);
    this.#rateAtDecrease = this.rate;
    this.#schedule();
  }

  suspend(until: number, why?: { reason: string; reply: string }): void {
    this.suspendedUntil = Math.max(this.suspendedUntil, until);
    if (why) this.suspendedFor = why;
  }

  /**
   * When a message deferred for throttling should come back: the next free slot of a schedule
   * paced at the current rate, so the deferred come back no faster than the site takes them.
   */
  retrySlot(now: number, random: () => number): number {
    const interval = this.rate === null ? 0 : 1 / this.rate;
    const earliest = now + MIN_RETRY_MS + Math.round(MIN_RETRY_MS * random());
    const slot = Math.max(earliest, this.#nextRetry);
    this.#nextRetry = slot + interval;
    return Math.min(slot, now + MAX_RETRY_MS);
  }

  #learnedForgotten(now: number): boolean {
    const last = Math.max(this.#lastRateThrottle, this.#lastConnThrottle);
    if (last === -Infinity) return true;
    if (now - last < FORGET_MS) return false;
    this.window = this.#ceil.maxConnections;
    this.rate = this.#ceil.rate;
    this.#lastRateThrottle = this.#lastConnThrottle = -Infinity;
    return true;
  }

  #increase(now: number): void {
    if (!this.#ceil.adaptive) return;
    this.#learnedForgotten(now);
    if (this.rate !== this.#ceil.rate && this.rate !== null && now - this.#rateDemandAt < RATE_HOLD_MS && now - this.#lastRateThrottle >= RATE_HOLD_MS && now - this.#lastRateIncrease >= 1000) {
      this.#lastRateIncrease = now;
      const next = this.rate + Math.max(MIN_RATE, this.#rateAtDecrease * RATE_STEP);
      this.rate = this.#ceil.rate === null ? next : Math.min(next, this.#ceil.rate);
    }
    if (this.window < this.#ceil.maxConnections && now - this.#slotDemandAt < CONN_PROBE_MS && now - this.#lastConnThrottle >= CONN_PROBE_MS && now - this.#lastConnIncrease >= CONN_PROBE_MS) {
      this.#lastConnIncrease = now;
      this.window = Math.min(this.#ceil.maxConnections, Math.floor(this.window) + 1);
    }
  }

  #pace(): Promise<Admit> | Admit {
    if (this.#closed) return 'closed';
    const now = this.#now();
    this.#increase(now);
    if (this.rate === null && this.#rateQ.length === 0) return 'go';
    if (this.#rateQ.length === 0 && now >= this.#nextAt) {
      this.#nextAt = Math.max(this.#nextAt, now) + 1 / this.rate!;
      return 'go';
    }
    this.#rateDemandAt = now;
    const expectedMs = this.rate === null ? 0 : this.#nextAt - now + this.#rateQ.length / this.rate;
    if (expectedMs > MAX_WAIT_MS || this.#rateQ.length >= MAX_WAITERS) return 'busy';
    return new Promise<Admit>((resolve) => {
      this.#rateQ.push((go) => resolve(go ? 'go' : 'closed'));
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#timer !== null || this.#rateQ.length === 0 || this.#closed) return;
    const wait = this.rate === null ? 0 : Math.max(0, Math.ceil(this.#nextAt - this.#now()));
    this.#timer = setTimeout(this.#release, wait);
  }

  readonly #release = (): void => {
    this.#timer = null;
    const now = this.#now();
    if (this.#rateQ.length > 0) this.#rateDemandAt = now;
    this.#increase(now);
    while (this.#rateQ.length > 0) {
      if (this.rate !== null) {
        if (now < this.#nextAt) break;
        this.#nextAt = Math.max(this.#nextAt, now) + 1 / this.rate;
      }
      this.#rateQ.shift()!(true);
    }
    this.#schedule();
  };

  #slot(): Promise<Admit> | Admit {
    if (this.#closed) return 'closed';
    if (this.#slotQ.length === 0 && this.inflight < Math.floor(this.window)) {
      this.inflight++;
      return 'go';
    }
    this.#slotDemandAt = this.#now();
    if (this.#slotQ.length >= MAX_WAITERS) return 'busy';
    return new Promise<Admit>((resolve) => {
      this.#slotQ.push((go) => resolve(go ? 'go' : 'closed'));
      this.#pumpSlots();
    });
  }

  #pumpSlots(): void {
    if (this.#slotQ.length > 0) {
      const now = this.#now();
      this.#slotDemandAt = now;
      this.#increase(now);
    }
    while (this.#slotQ.length > 0 && this.inflight < Math.floor(this.window)) {
      this.inflight++;
      this.#slotQ.shift()!(true);
    }
  }
}
