// MTA-STS (RFC 8461) as data, with no I/O: the `_mta-sts` TXT record (§3.1), the policy file
// (§3.2) and the MX pattern match (§4.1). Both inputs come from the network, so the parsers
// are strict and bounded: a record or policy that does not parse is no record or no policy.

/** RFC 8461 §3.2: max_age is at most 31557600 seconds (about a year). */
export const MAX_STS_AGE_S = 31_557_600;
/** §3.3: a policy body is at most 64 KiB. */
export const MAX_STS_POLICY_BYTES = 65_536;
/** A TXT record longer than this is not a record we parse (the RFC's id is at most 32 characters). */
const MAX_TXT_CHARS = 1024;
/** mx lines kept: a real policy names a handful; more is hostile. */
const MAX_MX_PATTERNS = 64;

export type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  mode: StsMode;
  /** Lower-case patterns: "mx.example.org" or "*.example.org". */
  mx: string[];
  maxAgeS: number;
  /**
   * The policy's known lines (version, mode, mx, max_age), normalised as "key: value": what
   * TLS-RPT reports as policy-string and what the cache stores. Unknown lines are checked and
   * dropped: §3.2 says they are ignored, and keeping them would let a hostile policy park up to
   * 64 KiB in every cache entry and every report (bounded: 3 + MAX_MX_PATTERNS lines of at most
   * 4 + 253 characters).
   */
  lines: string[];
}

export type StsTxtResult = { kind: 'record'; id: string } | { kind: 'none'; reason: string };

// §3.1: sts-id = 1*32(ALPHA / DIGIT); a field is name "=" value with no ";" or spaces inside.
const ID = /^[A-Za-z0-9]{1,32}$/;
const FIELD_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const FIELD_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]{1,256}$/; // printable, no ";" or "="

/**
 * The TXT answer for `_mta-sts.<domain>`: each record as node gives it (its strings, to be
 * joined). Records not starting with "v=STSv1" are ignored; not exactly one left, or one
 * that does not parse, is "no policy" (§3.1).
 */
export function parseStsTxt(records: readonly (readonly string[])[]): StsTxtResult {
  const sts: string[] = [];
  for (const rec of records.slice(0, 64)) {
    if (!Array.isArray(rec)) continue;
    const text = rec.join('');
    if (/^v=STSv1(;|\s|$)/.test(text)) sts.push(text);
  }
  if (sts.length === 0) return { kind: 'none', reason: 'no v=STSv1 TXT record' };
  if (sts.length > 1) return { kind: 'none', reason: `${sts.length} v=STSv1 TXT records (exactly one is needed)` };
  const text = sts[0]!;
  if (text.length > MAX_TXT_CHARS) return { kind: 'none', reason: 'TXT record too long' };
  let id: string | undefined;
  const fields = text.split(';');
  // A trailing ";" is allowed by the grammar (sts-text-record = sts-version 1*(sts-sep sts-field) [sts-sep]).
  if (fields.length > 1 && fields[fields.length - 1]!.trim() === '') fields.pop();
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i]!.replace(/^[ \t]+|[ \t]+$/g, '');
    const eq = f.indexOf('=');
    if (eq <= 0) return { kind: 'none', reason: `bad TXT field ${JSON.stringify(f.slice(0, 40))}` };
    const name = f.slice(0, eq);
    const value = f.slice(eq + 1);
    if (i === 0) {
      if (name !== 'v' || value !== 'STSv1') return { kind: 'none', reason: 'the record does not start with v=STSv1' };
      continue;
    }
    if (!FIELD_NAME.test(name) || !FIELD_VALUE.test(value)) return { kind: 'none', reason: `bad TXT field ${JSON.stringify(f.slice(0, 40))}` };
    if (name === 'id') {
      if (id !== undefined) return { kind: 'none', reason: 'two id fields' };
      if (!ID.test(value)) return { kind: 'none', reason: 'the id is not 1 to 32 letters and digits' };
      id = value;
    }
  }
  if (id === undefined) return { kind: 'none', reason: 'no id field' };
  return { kind: 'record', id };
}

export type StsPolicyResult = { ok: true; policy: StsPolicy } | { ok: false; reason: string };

// §3.2: policy-field = name ":" *WSP value, lines end with CRLF (LF accepted: the RFC's
// own ABNF says CRLF, but "senders MAY accept LF" is common practice, and it changes nothing).
const KEY = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
const DIGITS = /^[0-9]{1,10}$/;
// A domain name or "*." and one; labels 1-63 of letters, digits, hyphens (A-labels).
const LABEL = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?';
const MX_PATTERN = new RegExp(`^(?:\\*\\.)?(?:${LABEL}\\.)+${LABEL}\\.?$`);

/** The policy body (already bounded to MAX_STS_POLICY_BYTES and decoded as UTF-8). */
export function parseStsPolicy(body: string): StsPolicyResult {
  if (body.length > MAX_STS_POLICY_BYTES) return { ok: false, reason: 'policy larger than 64 KiB' };
  const raw = body.split('\n');
  const lines: string[] = [];
  let version: string | undefined;
  let mode: StsMode | undefined;
  let maxAgeS: number | undefined;
  const mx: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    let line = raw[i]!;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') {
      // Only the end of the file may be empty (the last line's terminator).
      if (raw.slice(i + 1).every((l) => l === '' || l === '\r')) break;
      return { ok: false, reason: `empty line ${i + 1}` };
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return { ok: false, reason: `line ${i + 1} is not "key: value"` };
    const key = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!KEY.test(key)) return { ok: false, reason: `bad key on line ${i + 1}` };
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    if (/[\x00-\x1f\x7f]/.test(value)) return { ok: false, reason: `control character on line ${i + 1}` };
    switch (key) {
      case 'version':
        if (version !== undefined) return { ok: false, reason: 'two version lines' };
        if (value !== 'STSv1') return { ok: false, reason: `version ${JSON.stringify(value.slice(0, 20))} is not STSv1` };
        version = value;
        lines.push(`${key}: ${value}`);
        break;
      case 'mode':
        if (mode !== undefined) return { ok: false, reason: 'two mode lines' };
        if (value !== 'enforce' && value !== 'testing' && value !== 'none') return { ok: false, reason: `mode ${JSON.stringify(value.slice(0, 20))} is not enforce, testing or none` };
        mode = value;
        lines.push(`${key}: ${value}`);
        break;
      case 'max_age':
        if (maxAgeS !== undefined) return { ok: false, reason: 'two max_age lines' };
        if (!DIGITS.test(value)) return { ok: false, reason: 'max_age is not 1 to 10 digits' };
        maxAgeS = Math.min(Number(value), MAX_STS_AGE_S);
        lines.push(`${key}: ${value}`);
        break;
      case 'mx': {
        const p = value.toLowerCase();
        if (!MX_PATTERN.test(p) || p.length > 253) return { ok: false, reason: `bad mx pattern ${JSON.stringify(value.slice(0, 80))}` };
        if (mx.length >= MAX_MX_PATTERNS) return { ok: false, reason: `more than ${MAX_MX_PATTERNS} mx lines` };
        mx.push(p.endsWith('.') ? p.slice(0, -1) : p);
        lines.push(`${key}: ${value}`);
        break;
      }
      default:
        // §3.2: unknown fields are ignored (future extensions), and not kept.
        break;
    }
  }
  if (version === undefined) return { ok: false, reason: 'no version line' };
  if (mode === undefined) return { ok: false, reason: 'no mode line' };
  if (maxAgeS === undefined) return { ok: false, reason: 'no max_age line' };
  if (mode !== 'none' && mx.length === 0) return { ok: false, reason: `mode ${mode} with no mx line` };
  return { ok: true, policy: { mode, mx, maxAgeS, lines } };
}

/**
 * §4.1: does the MX host name match one of the patterns? A pattern "*.example.org" matches
 * exactly one more label on the left ("mx.example.org", not "example.org" nor "a.b.example.org").
 */
export function mxMatches(host: string, patterns: readonly string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  for (const p of patterns) {
    if (p.startsWith('*.')) {
      const dot = h.indexOf('.');
      if (dot > 0 && h.slice(dot + 1) === p.slice(2)) return true;
    } else if (h === p) return true;
  }
  return false;
}
