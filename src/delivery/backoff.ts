// When a deferred message is tried again, and when it is given up. RFC 5321 §4.5.4.1: retry
// after a delay ("at least 30 minutes" there; Postfix's 5 minutes doubling to about an hour is
// today's practice), with "more sophisticated and variable strategies" welcome, and give up
// after "at least 4-5 days". Schedules are parsed once, at load (STYLE §7).
//
// Retry schedule syntax: comma-separated durations, the delay before attempt 2, 3, ...; the last
// one repeats forever. Default "5m,10m,20m,40m,1h". A list rather than "5m*2..1h": it reads as
// what it does and can express any curve. Duration syntax: lib/duration.ts.
import { parseDuration, parseDurationList } from '../lib/duration.js';
import { valueOf, type Result } from '../lib/result.js';

/** Delays in ms; the last repeats. Non-empty, frozen. */
export type RetrySchedule = readonly number[];

/** Parse "5m,10m,20m,40m,1h" (see header). Every delay must be > 0. */
export function parseRetrySchedule(text: string): Result<RetrySchedule, string> {
  return parseDurationList(text, 'retry schedule');
}

export const DEFAULT_RETRY_SCHEDULE = '5m,10m,20m,40m,1h';
export const DEFAULT_MAX_LIFETIME = '5d';
export const DEFAULT_RETRY_SCHEDULE_MS: RetrySchedule = valueOf(parseRetrySchedule(DEFAULT_RETRY_SCHEDULE));
export const DEFAULT_MAX_LIFETIME_MS = valueOf(parseDuration(DEFAULT_MAX_LIFETIME));

/** Each delay is scaled by a random factor in [0.9, 1.1]: messages deferred together spread out. */
export const RETRY_JITTER = 0.1;

/**
 * When to try again after `attempts` failed attempts (1 after the first failure): the
 * schedule's entry `attempts - 1`, the last one once past the end, jittered ±10%.
 */
export function nextRetryAt(attempts: number, now: number, schedule: RetrySchedule = DEFAULT_RETRY_SCHEDULE_MS, random: () => number = Math.random): number {
  const i = Math.min(Math.max(attempts - 1, 0), schedule.length - 1);
  const delay = schedule[i]!;
  return now + Math.round(delay * (1 + RETRY_JITTER * (2 * random() - 1)));
}

/** True once a message received at `receivedAt` has been queued for `maxLifetimeMs` or more. */
export function expired(receivedAt: number, now: number, maxLifetimeMs: number = DEFAULT_MAX_LIFETIME_MS): boolean {
  return now - receivedAt >= maxLifetimeMs;
}
