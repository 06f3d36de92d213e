// The one grammar for durations written by an operator (POSTERN_*_MS settings, retry
// schedules, lifetimes): "<number><unit>" repeated without spaces, units ms, s, m, h, d, w,
// e.g. "90s", "5m", "1h30m", "1.5h", "2w". A bare number is accepted only where the caller names its unit
// (settings whose name ends in _MS take "300000"); elsewhere a unit is required, because a bare
// "5" could mean 5 ms or 5 minutes and the wrong guess is silent.
import { failure, success, type Result } from './result.js';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/y;
const BARE = /^\d+(?:\.\d+)?$/;

export interface DurationOptions {
  /** Accept a bare number as milliseconds ("300000"). */
  readonly bareMs?: boolean;
}

/** Milliseconds, rounded to an integer; an error quoting the text otherwise. */
export function parseDuration(text: string, options: DurationOptions = {}): Result<number, string> {
  const s = text.trim().toLowerCase();
  let total: number;
  const bare = options.bareMs === true ? BARE.exec(s) : null;
  if (bare) {
    total = Number(bare[0]);
  } else {
    total = 0;
    let end = 0;
    let parts = 0;
    PART.lastIndex = 0;
    for (let m = PART.exec(s); m; m = PART.exec(s)) {
      total += Number(m[1]) * UNIT_MS[m[2]!]!;
      end = PART.lastIndex;
      parts++;
    }
    if (parts === 0 || end !== s.length) total = NaN;
  }
  if (!Number.isSafeInteger(Math.round(total))) {
    return failure(`duration "${text}" is not a number with a unit; expected like 90s, 5m, 1h30m or 5d (units ms, s, m, h, d, w)`);
  }
  return success(Math.round(total));
}

/**
 * A comma-separated list of durations, each > 0, e.g. a retry schedule "5m,10m,20m,40m,1h".
 * Every bad item is named in the error. The result is frozen and never empty.
 */
export function parseDurationList(text: string, what = 'duration list'): Result<readonly number[], string> {
  const items = text.split(',').map((x) => x.trim());
  const delays: number[] = [];
  const bad: string[] = [];
  for (const item of items) {
    const d = parseDuration(item);
    if (!d.ok || d.value <= 0) bad.push(`"${item}"`);
    else delays.push(d.value);
  }
  if (bad.length > 0 || delays.length === 0) {
    return failure(`${what} "${text}" has bad delays (${bad.join(', ')}); expected comma-separated durations > 0 like 5m,10m,20m,40m,1h`);
  }
  return success(Object.freeze(delays));
}

const FORMAT_UNITS: ReadonlyArray<readonly [string, number]> = [['w', 604_800_000], ['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]];

/** Milliseconds written back in the grammar above, largest units first: 5400000 → "1h30m". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0ms';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of FORMAT_UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
