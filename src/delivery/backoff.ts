// When a deferred message is tried again, and when it is given up. RFC 5321 §4.5.4.1: retry
// after a delay ("at least 30 minutes" there; Postfix's 5 minutes doubling to about an hour is
// today's practice), with "more sophisticated and variable strategies" welcome, and give up
// after "at least 4-5 days". Schedules are parsed once, at load (STYLE §7).
//
// Retry schedule syntax: comma-separated durations, the delay before attempt 2, 3, ...; the last
// one repeats forever. Default "5m,10m,20m,40m,1h". A list rather than "5m*2..1h": it reads as
// what it does and can express any curve. Duration syntax: see parseDuration.

export type ParseError = { error: string };

/** Delays in ms; the last repeats. Non-empty, frozen. */
export type RetrySchedule = readonly number[];

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/gy;

/**
 * "<number><unit>" repeated, units ms, s, m, h, d, w: "5d", "90s", "1h30m", "1.5h". A unit is
 * required: a bare "5" could mean 5 ms or 5 minutes, and the wrong guess is silent. Result in ms.
 */
export function parseDuration(text: string): number | ParseError {
  const s = text.trim().toLowerCase();
  let total = 0;
  PART.lastIndex = 0;
  let end = 0;
  for (let m = PART.exec(s); m; m = PART.exec(s)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    end = PART.lastIndex;
  }
  if (s === '' || end !== s.length || !Number.isSafeInteger(Math.round(total))) {
    return { error: `duration "${text}" is not a number with a unit; expected like 90s, 5m, 1h30m or 5d (units ms, s, m, h, d, w)` };
  }
  return Math.round(total);
}

/** Parse "5m,10m,20m,40m,1h" (see header). Every delay must be > 0. */
export function parseRetrySchedule(text: string): RetrySchedule | ParseError {
  const items = text.split(',').map((x) => x.trim());
  const delays: number[] = [];
  const bad: string[] = [];
  for (const item of items) {
    const d = parseDuration(item);
    if (typeof d !== 'number' || d <= 0) bad.push(`"${item}"`);
    else delays.push(d);
  }
  if (bad.length > 0 || delays.length === 0) {
    return { error: `retry schedule "${text}" has bad delays (${bad.join(', ')}); expected comma-separated durations > 0 like 5m,10m,20m,40m,1h` };
  }
  return Object.freeze(delays);
}

export const DEFAULT_RETRY_SCHEDULE = '5m,10m,20m,40m,1h';
export const DEFAULT_MAX_LIFETIME = '5d';
export const DEFAULT_RETRY_SCHEDULE_MS: RetrySchedule = parseRetrySchedule(DEFAULT_RETRY_SCHEDULE) as RetrySchedule;
export const DEFAULT_MAX_LIFETIME_MS = parseDuration(DEFAULT_MAX_LIFETIME) as number;

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
