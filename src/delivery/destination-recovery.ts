// Messages waiting for a destination that is down, and their return. A deferral caused by the
// destination (deferral-cause.ts) ties the message to it in the queue (wait index); this
// probes each destination that has messages waiting, and once it is seen working (a delivery
// to it succeeded, its probe among them) releases the waiting messages, paced:
//
//   (none) ──tie──▶ down ──probe timer: release 1 message──▶ probe out
//                   ▲  ▲                                      │ settled, still down:
//                   │  └──────── interval × 2 (≤ max) ◀───────┘ next probe
//                   │
//                   └─ a released message tied again ── draining ◀── a delivery succeeded
//                                                          │ release up to `window`, refill
//                                                          ▼ at window/2 as they settle
//                                                        (none) when nothing waits
//
// Pacing: at most `window` released messages of one destination are out (due, leased or in
// delivery) at a time, so a long wait list neither floods the destination's pool (its
// connection cap and rate throttle still apply to each message) nor takes every delivery
// slot from other destinations; the window is a few times the connection cap.
// Why a message and not a bare connection as the probe: it needs no new transport call, goes
// through the destination's breaker (one half-open attempt) and delivers mail when it works.
// The state is in memory; the ties are in the queue, so a restarted node probes every
// destination that has messages waiting (start()).
import type { Logger } from '../log/logger.js';
import { invalidArgument } from '../lib/invalid-argument.js';

export interface RecoveryQueue {
  releaseWaiting(destination: string, limit: number): Promise<string[]>;
  waitingCounts(): Record<string, number>;
}

export interface DestinationRecoveryOptions {
  queue: RecoveryQueue;
  log: Logger;
  /** Released messages of one destination out at a time (default 64). */
  window?: number;
  /** First probe this long after the destination was found down (default 1 s) ... */
  probeBaseMs?: number;
  /** ... doubling on each failed probe up to this (default 10 s). */
  probeMaxMs?: number;
  /**
   * A probe, or a released message, that has not settled after this long is presumed lost
   * (removed or held by an administrator, its delivery crashed): it no longer counts against
   * the window (default 60 s).
   */
  probeTimeoutMs?: number;
  /** When the destination's circuit next lets an attempt through (0: it does now). */
  openUntil?: (key: string) => number;
  /** Released messages are due: lease now instead of at the next poll. */
  wake?: () => void;
  now?: () => number;
  random?: () => number;
}

interface Wait {
  mode: 'down' | 'draining';
  /** The current probe interval. */
  intervalMs: number;
  timer: NodeJS.Timeout | null;
  /** The message out as the probe, and since when. */
  probe: string | null;
  probeAt: number;
  /** Released and not settled yet: id -> when released. */
  readonly out: Map<string, number>;
  /** A release transaction is under way. */
  releasing: boolean;
}

/** Probe-interval jitter: destinations that went down together do not probe in step. */
const JITTER = 0.1;

export class DestinationRecovery {
  readonly #o: Required<Omit<DestinationRecoveryOptions, 'openUntil' | 'wake'>> & Pick<DestinationRecoveryOptions, 'openUntil' | 'wake'>;
  readonly #waits = new Map<string, Wait>();
  /** Released message id -> its destination key. */
  readonly #released = new Map<string, string>();
  #stopped = false;
  /** Probes sent and drains started, for tests and the log. */
  readonly stats = { probes: 0, drains: 0, released: 0 };

  constructor(opts: DestinationRecoveryOptions) {
    this.#o = {
      window: 64,
      probeBaseMs: 1000,
      probeMaxMs: 10_000,
      probeTimeoutMs: 60_000,
      now: Date.now,
      random: Math.random,
      ...opts,
    };
    const o = this.#o;
    if (!(Number.isInteger(o.window) && o.window >= 1)) throw invalidArgument(`recovery window must be an integer >= 1, got ${o.window}`);
    if (!(o.probeBaseMs > 0 && o.probeMaxMs >= o.probeBaseMs)) throw invalidArgument(`recovery needs 0 < probeBaseMs <= probeMaxMs, got ${o.probeBaseMs}, ${o.probeMaxMs}`);
  }

  /** After a (re)start: every destination with messages waiting in the queue gets a probe soon. */
  start(): void {
    // Spread over the first interval: a node back from a restart with many destinations
    // waiting does not open a connection to each in the same millisecond.
    for (const key of Object.keys(this.#o.queue.waitingCounts())) this.#down(key, Math.floor(this.#o.random() * this.#o.probeBaseMs));
  }

  stop(): void {
    this.#stopped = true;
    for (const w of this.#waits.values()) if (w.timer) clearTimeout(w.timer);
    this.#waits.clear();
    this.#released.clear();
  }

  /** The destinations being probed or drained (for tests and the log). */
  state(key: string): 'down' | 'draining' | null {
    return this.#waits.get(key)?.mode ?? null;
  }

  /** A delivery to `key` succeeded: release what waits for it. */
  up(key: string): void {
    const w = this.#waits.get(key);
    if (w === undefined || this.#stopped) return;
    if (w.mode === 'down') {
      this.stats.drains++;
      this.#o.log.info({ destination: key, waiting: this.#o.queue.waitingCounts()[key] ?? 0 }, 'destination answers again: releasing the messages waiting for it');
    }
    w.mode = 'draining';
    w.intervalMs = this.#o.probeBaseMs;
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    this.#refill(key, w);
  }

  /**
   * Message `id` was settled (or its attempt ended otherwise); `tiedTo` are the destinations
   * it now waits for (its destination deferrals).
   */
  settled(id: string, tiedTo: readonly string[]): void {
    if (this.#stopped) return;
    const from = this.#released.get(id);
    if (from !== undefined) {
      this.#released.delete(id);
      const w = this.#waits.get(from);
      if (w !== undefined) {
        w.out.delete(id);
        if (w.probe === id) {
          w.probe = null;
          if (w.mode === 'down' && tiedTo.includes(from)) {
            // The probe came back tied: still down; the next one after a longer interval.
            w.intervalMs = Math.min(w.intervalMs * 2, this.#o.probeMaxMs);
            this.#schedule(from, w, w.intervalMs);
          } else if (w.mode === 'down') {
            // Not deferred by the destination this time (delivered, refused for itself, or
            // routed elsewhere now): it answers.
            this.up(from);
          }
        } else if (w.mode === 'draining' && tiedTo.includes(from)) {
          // A released message deferred by the destination again: it is down again.
          this.#down(from, this.#o.probeBaseMs);
        }
      }
    }
    for (const key of tiedTo) if (!this.#waits.has(key)) this.#down(key, this.#o.probeBaseMs);
    if (from !== undefined) {
      const w = this.#waits.get(from);
      if (w !== undefined && w.mode === 'draining') this.#refill(from, w);
    }
  }

  #down(key: string, inMs: number): void {
    let w = this.#waits.get(key);
    if (w === undefined) {
      w = { mode: 'down', intervalMs: this.#o.probeBaseMs, timer: null, probe: null, probeAt: 0, out: new Map(), releasing: false };
      this.#waits.set(key, w);
    } else {
      w.mode = 'down';
      w.intervalMs = this.#o.probeBaseMs;
    }
    this.#schedule(key, w, inMs);
  }

  /** The next probe of `key` after `intervalMs` (jittered), and not before its circuit lets one through. */
  #schedule(key: string, w: Wait, intervalMs: number): void {
    if (w.timer) clearTimeout(w.timer);
    const now = this.#o.now();
    const jittered = Math.round(intervalMs * (1 + JITTER * (2 * this.#o.random() - 1)));
    const at = Math.max(now + jittered, (this.#o.openUntil?.(key) ?? 0) + 1);
    w.timer = setTimeout(() => {
      w.timer = null;
      void this.#probe(key, w);
    }, Math.max(0, at - now));
    w.timer.unref();
  }

  async #probe(key: string, w: Wait): Promise<void> {
    if (this.#stopped || this.#waits.get(key) !== w || w.mode !== 'down') return;
    const now = this.#o.now();
    if (w.probe !== null && now - w.probeAt < this.#o.probeTimeoutMs) {
      this.#schedule(key, w, this.#o.probeTimeoutMs - (now - w.probeAt));
      return;
    }
    let ids: string[];
    try {
      ids = await this.#o.queue.releaseWaiting(key, 1);
    } catch (err) {
      if (this.#stopped) return;
      this.#o.log.warn({ err, destination: key }, 'probe release failed');
      this.#schedule(key, w, w.intervalMs);
      return;
    }
    if (this.#stopped || this.#waits.get(key) !== w) return;
    if (ids.length === 0) {
      // Nothing waits any more (delivered, removed, or released by a drain meanwhile).
      if (w.out.size === 0) this.#forget(key, w);
      return;
    }
    this.stats.probes++;
    w.probe = ids[0]!;
    w.probeAt = this.#o.now();
    this.#track(key, w, ids);
    // The probe could come back without the destination's verdict (e.g. lease lost): look again later.
    this.#schedule(key, w, this.#o.probeTimeoutMs);
  }

  #refill(key: string, w: Wait): void {
    if (w.releasing || this.#stopped) return;
    if (w.out.size > this.#o.window / 2) {
      // A released message that never settles must not shrink the window for good.
      const old = this.#o.now() - this.#o.probeTimeoutMs;
      for (const [id, at] of w.out) {
        if (at > old) break; // in release order
        w.out.delete(id);
        this.#released.delete(id);
      }
    }
    if (w.out.size > this.#o.window / 2) return;
    const want = this.#o.window - w.out.size;
    w.releasing = true;
    void this.#o.queue.releaseWaiting(key, want).then(
      (ids) => {
        w.releasing = false;
        if (this.#stopped || this.#waits.get(key) !== w) return;
        this.#track(key, w, ids);
        if (w.mode !== 'draining') return;
        if (ids.length === 0 && w.out.size === 0) this.#forget(key, w);
        // Released messages that settled while the release ran leave room: look again.
        else if (ids.length === want && w.out.size <= this.#o.window / 2) this.#refill(key, w);
      },
      (err: unknown) => {
        w.releasing = false;
        if (this.#stopped) return;
        this.#o.log.warn({ err, destination: key }, 'release of waiting messages failed');
        this.#down(key, this.#o.probeBaseMs);
      },
    );
  }

  #track(key: string, w: Wait, ids: string[]): void {
    if (ids.length === 0) return;
    const now = this.#o.now();
    for (const id of ids) {
      w.out.set(id, now);
      this.#released.set(id, key);
    }
    this.stats.released += ids.length;
    this.#o.wake?.();
  }

  #forget(key: string, w: Wait): void {
    if (w.timer) clearTimeout(w.timer);
    this.#waits.delete(key);
  }
}
