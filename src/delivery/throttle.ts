// Per-destination rate limits (rates as lib/rate.ts parses them: "100/s", "10/h"; after kumo
// crates/throttle). RFC 5321 §4.5.4.1 asks senders not to overload a receiver; receivers
// enforce it with 421/4.7.x, so a limit we keep ourselves costs fewer deferrals than one they do.
// GCRA (the "virtual scheduling" form of the generic cell rate algorithm, ITU-T I.371): one
// number per destination, no timers, and an exact "wait this long" answer for the scheduler.
import { invalidArgument } from '../lib/invalid-argument.js';

/**
 * GCRA: `#tat` is the theoretical arrival time of the next event at the nominal rate. An event
 * at `now` conforms when it is at most `burst - 1` intervals early:
 *
 *   interval = 1 / rate            tolerance = (burst - 1) × interval
 *   now ──────────────┬────────── tat ──▶
 *                     tat - tolerance     take() allowed iff now ≥ tat - tolerance,
 *                                         then tat = max(tat, now) + interval
 *
 * A refused take() changes nothing, so asking again costs nothing.
 */
/** Less than any real wait, more than the rounding error of 1 / rate over a day of timestamps. */
const FLOAT_SLACK_MS = 1e-6;

export class Throttle {
  readonly #interval: number;
  readonly #tolerance: number;
  #tat = -Infinity;

  constructor(rate: number, burst = 1) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw invalidArgument(`Throttle rate must be a positive number of events per ms, got ${rate}`);
    if (!Number.isInteger(burst) || burst < 1) throw invalidArgument(`Throttle burst must be an integer >= 1, got ${burst}`);
    this.#interval = 1 / rate;
    this.#tolerance = (burst - 1) * this.#interval;
  }

  /** 0 when an event may happen now (and it is counted), else the ms to wait before asking again. */
  take(now = Date.now()): number {
    const tat = Math.max(this.#tat, now);
    const early = tat - this.#tolerance - now;
    // 1 / (1 / 49) is 49.00000000000001: without the slack a float crumb would turn an exact
    // wait of 49 ms into 50, then a take at 49 into one more wait of 1 ms.
    if (early > FLOAT_SLACK_MS) return Math.ceil(early - FLOAT_SLACK_MS);
    this.#tat = tat + this.#interval;
    return 0;
  }

  /** True when the throttle is back at full burst, i.e. indistinguishable from a new one. */
  idle(now = Date.now()): boolean {
    return this.#tat <= now;
  }
}

/** One Throttle per destination key, made on first use; idle ones are dropped by sweep(). */
export class ThrottleMap {
  readonly #rate: number;
  readonly #burst: number;
  readonly #map = new Map<string, Throttle>();
  #sweepAt = 0;

  constructor(rate: number, burst = 1) {
    new Throttle(rate, burst); // validate once, here, not on first use
    this.#rate = rate;
    this.#burst = burst;
  }

  take(key: string, now = Date.now()): number {
    let t = this.#map.get(key);
    if (!t) {
      t = new Throttle(this.#rate, this.#burst);
      this.#map.set(key, t);
    }
    const wait = t.take(now);
    // Amortised: sweep when the map has doubled since the last sweep.
    if (this.#map.size > Math.max(64, this.#sweepAt * 2)) this.sweep(now);
    return wait;
  }

  /** Drop throttles that have recovered to full burst (forgetting them changes no answer). */
  sweep(now = Date.now()): void {
    for (const [k, t] of this.#map) if (t.idle(now)) this.#map.delete(k);
    this.#sweepAt = this.#map.size;
  }

  get size(): number {
    return this.#map.size;
  }
}
