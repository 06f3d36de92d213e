// Per-destination circuit breaker. RFC 5321 §4.5.4.1: a client "SHOULD keep a list of hosts it
// cannot reach and corresponding connection timeouts, rather than just retrying queued mail
// items". After `threshold` consecutive connection-level failures the destination opens, the
// scheduler defers its messages as a whole, and one probe tests it when the open interval ends.
//
//   closed ──threshold failures──▶ open ──interval elapsed──▶ half-open (one probe)
//     ▲                              ▲                              │
//     └────────── success ───────────┼──────────────────────────────┤
//                                    └── probe fails (interval × 2) ┘
//
// Only connection-level failures count (refused, timeout, 421 or TLS failure on connect): a
// 5xx for one recipient says nothing about whether the site is up. The caller decides which.
import { invalidArgument } from '../lib/invalid-argument.js';
import type { DestinationGate } from './scheduler.js';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit (default 5). */
  threshold?: number;
  /** First open interval (default 30 s); doubles on each failed probe ... */
  baseOpenMs?: number;
  /** ... up to this (default 30 min). */
  maxOpenMs?: number;
  /** Each interval is scaled by a random factor in [1 - jitter, 1 + jitter] (default 0.1), so
   * destinations that failed together do not all probe in the same second. */
  jitter?: number;
  /** A probe that reports nothing for this long is presumed lost; another is allowed (default 5 min). */
  probeTimeoutMs?: number;
  random?: () => number;
}

export type CircuitState = 'closed' | 'open' | 'half-open';

interface Filled {
  threshold: number;
  baseOpenMs: number;
  maxOpenMs: number;
  jitter: number;
  probeTimeoutMs: number;
  random: () => number;
}

function fill(o: CircuitBreakerOptions): Filled {
  const f: Filled = {
    threshold: o.threshold ?? 5,
    baseOpenMs: o.baseOpenMs ?? 30_000,
    maxOpenMs: o.maxOpenMs ?? 30 * 60_000,
    jitter: o.jitter ?? 0.1,
    probeTimeoutMs: o.probeTimeoutMs ?? 5 * 60_000,
    random: o.random ?? Math.random,
  };
  if (!Number.isInteger(f.threshold) || f.threshold < 1) throw invalidArgument(`circuit breaker threshold must be an integer >= 1, got ${f.threshold}`);
  if (!(f.baseOpenMs > 0) || !(f.maxOpenMs >= f.baseOpenMs)) throw invalidArgument(`circuit breaker needs 0 < baseOpenMs <= maxOpenMs, got ${f.baseOpenMs}, ${f.maxOpenMs}`);
  if (!(f.jitter >= 0 && f.jitter < 1)) throw invalidArgument(`circuit breaker jitter must be in [0, 1), got ${f.jitter}`);
  return f;
}

export class CircuitBreaker {
  readonly #o: Filled;
  #failures = 0;
  /** How many times the circuit has opened since it was last closed; sets the interval. */
  #trips = 0;
  /** When open: the time the probe becomes allowed. 0 when closed. */
  #openUntil = 0;
  /** When half-open with a probe out: when that probe is presumed lost. 0 when none is out. */
  #probeUntil = 0;
  /** The last failure recorded or probe let through: how long the breaker has had nothing to say. */
  #touchedAt = 0;

  constructor(opts: CircuitBreakerOptions = {}) {
    this.#o = fill(opts);
  }

  state(now = Date.now()): CircuitState {
    if (this.#trips === 0) return 'closed';
    return now < this.#openUntil ? 'open' : 'half-open';
  }

  /**
   * Closed: true. Open: false. Half-open: true once (the probe), then false until the probe
   * reports back or `probeTimeoutMs` passes.
   */
  canAttempt(now = Date.now()): boolean {
    const s = this.state(now);
    if (s === 'closed') return true;
    if (s === 'open') return false;
    if (this.#probeUntil > now) return false;
    this.#probeUntil = now + this.#o.probeTimeoutMs;
    this.#touchedAt = now;
    return true;
  }

  /** When an open circuit lets its probe through (0 when closed): when to look at it again. */
  retryAt(): number {
    return this.#openUntil;
  }

  recordFailure(now = Date.now()): void {
    this.#touchedAt = now;
    const s = this.state(now);
    // Failures of attempts that started before the circuit opened say nothing new.
    if (s === 'open') return;
    if (s === 'closed') {
      this.#failures++;
      if (this.#failures < this.#o.threshold) return;
    }
    // Threshold reached, or the probe failed: (re)open with the next, longer interval.
    this.#trips++;
    this.#probeUntil = 0;
    const exp = Math.min(this.#o.baseOpenMs * 2 ** (this.#trips - 1), this.#o.maxOpenMs);
    const factor = 1 + this.#o.jitter * (2 * this.#o.random() - 1);
    this.#openUntil = now + Math.round(exp * factor);
  }

  /**
   * True when forgetting the breaker loses nothing worth keeping: nothing has happened to it for
   * longer than the longest open interval plus a lost probe's time. A closed one's few failures
   * are that old (a later failure starts the count again); an open one's destination has had no
   * mail asking for it (a probe would have touched it), so no one waits on its state.
   */
  stale(now: number): boolean {
    return now - this.#touchedAt > this.#o.maxOpenMs + this.#o.probeTimeoutMs && now >= this.#openUntil;
  }

  recordSuccess(): void {
    this.#failures = 0;
    this.#trips = 0;
    this.#openUntil = 0;
    this.#probeUntil = 0;
  }
}

/** A destination's circuit opened (`open`: from closed) or closed again (the alerts' hook). */
export type CircuitChange = (key: string, open: boolean, now: number) => void;

/**
 * One CircuitBreaker per destination key; closed, failure-free breakers are not kept, and stale
 * ones (CircuitBreaker.stale) are swept whenever the map has doubled since the last sweep, so a
 * node that meets a stream of failing destinations (MX delivery to dead domains, hostile
 * senders' recipients) keeps only the recent ones.
 */
export class CircuitBreakerMap {
  readonly #opts: CircuitBreakerOptions;
  readonly #map = new Map<string, CircuitBreaker>();
  readonly #onChange: CircuitChange | undefined;
  /** Breakers not closed (open or half-open) now. */
  #open = 0;
  #sweptSize = 0;

  constructor(opts: CircuitBreakerOptions = {}, onChange?: CircuitChange) {
    fill(opts); // validate at construction
    this.#opts = opts;
    this.#onChange = onChange;
  }

  /** Destinations whose circuit is open or half-open now. */
  get openCount(): number {
    return this.#open;
  }

  canAttempt(key: string, now = Date.now()): boolean {
    return this.#map.get(key)?.canAttempt(now) ?? true;
  }

  state(key: string, now = Date.now()): CircuitState {
    return this.#map.get(key)?.state(now) ?? 'closed';
  }

  /** 0 when the destination is closed. */
  retryAt(key: string): number {
    return this.#map.get(key)?.retryAt() ?? 0;
  }

  recordFailure(key: string, now = Date.now()): void {
    let b = this.#map.get(key);
    if (!b) {
      if (this.#map.size >= Math.max(SWEEP_FLOOR, this.#sweptSize * 2)) this.sweep(now);
      b = new CircuitBreaker(this.#opts);
      this.#map.set(key, b);
    }
    const wasClosed = b.state(now) === 'closed';
    b.recordFailure(now);
    if (wasClosed && b.state(now) !== 'closed') {
      this.#open++;
      this.#onChange?.(key, true, now);
    }
  }

  recordSuccess(key: string, now = Date.now()): void {
    const b = this.#map.get(key);
    // A closed breaker with no failures is the default; dropping it keeps the map to the sick.
    this.#map.delete(key);
    if (b !== undefined && b.state(now) !== 'closed') {
      this.#open--;
      this.#onChange?.(key, false, now);
    }
  }

  /** Forget the stale breakers; an open one forgotten is reported closed (no mail waits on it). */
  sweep(now = Date.now()): void {
    for (const [key, b] of this.#map) {
      if (!b.stale(now)) continue;
      this.#map.delete(key);
      if (b.state(now) !== 'closed') {
        this.#open--;
        this.#onChange?.(key, false, now);
      }
    }
    this.#sweptSize = this.#map.size;
  }

  get size(): number {
    return this.#map.size;
  }
}

/** Below this many breakers the map is never swept (sweeping is then not worth its loop). */
const SWEEP_FLOOR = 256;

/**
 * The scheduler's gate on a map of breakers: a destination may be tried while its circuit
 * lets it; connection failures count towards opening it, a delivery closes it. No pacing here
 * (the shaper paces every destination).
 */
export function breakerGate(breakers: CircuitBreakerMap): DestinationGate {
  return {
    delayMs: () => 0,
    canAttempt: (key, now) => breakers.canAttempt(key, now),
    retryAt: (key) => breakers.retryAt(key),
    record: (key, outcome, now) => {
      if (outcome === 'connection-failure') breakers.recordFailure(key, now);
      else if (outcome === 'ok') breakers.recordSuccess(key, now);
    },
  };
}
