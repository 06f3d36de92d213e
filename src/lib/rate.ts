// The one grammar for rates written by an operator (POSTERN_DEST_RATE, POSTERN_HTTP_RATE and
// any later per-rule limit): "<count>/<period>", e.g. "100/s", "6000/m", "10/h", "5/d",
// "50/5m". Parsed once, at load (after kumo crates/throttle), into events per millisecond.
import { failure, success, type Result } from './result.js';

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000, hour: 3_600_000, d: 86_400_000, day: 86_400_000 };

/**
 * count is a positive number; period is a unit (s, m, h, d; also sec, min, hour, day) with an
 * optional integer multiplier. Returns events per millisecond.
 */
export function parseRate(text: string): Result<number, string> {
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d*)\s*([a-z]+)\s*$/i.exec(text);
  const unit = m ? UNIT_MS[m[3]!.toLowerCase()] : undefined;
  const count = m ? Number(m[1]) : NaN;
  const mult = m && m[2] !== '' ? Number(m[2]) : 1;
  if (!m || unit === undefined || !(count > 0) || !(mult >= 1)) {
    return failure(`rate "${text}" is not a count per period; expected like 100/s, 6000/m, 10/h, 5/d or 50/5m`);
  }
  return success(count / (mult * unit));
}

const FORMAT_PERIODS: ReadonlyArray<readonly [string, number]> = [['s', 1000], ['m', 60_000], ['h', 3_600_000], ['d', 86_400_000]];

/** Events per ms written back as "count/unit", with the shortest period whose count is whole. */
export function formatRate(perMs: number): string {
  for (const [unit, ms] of FORMAT_PERIODS) {
    const n = perMs * ms;
    if (Math.abs(n - Math.round(n)) < 1e-9 && Math.round(n) >= 1) return `${Math.round(n)}/${unit}`;
  }
  return `${Number((perMs * 86_400_000).toPrecision(6))}/d`;
}
