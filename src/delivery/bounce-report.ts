// Reading a report that came back from the Internet: an RFC 3464 delivery status notification
// (multipart/report; report-type=delivery-status, also RFC 6533's global form) or an RFC 5965
// ARF feedback report (report-type=feedback-report), with the headers of the original message
// (message/rfc822 or text/rfc822-headers part). MIME is parsed by postal-mime (not the hot
// path); the report fields by the small reader below. Everything is hostile input: sizes,
// groups, field lengths and nesting are bounded, and nothing here throws on malformed text.
//
// postal-mime runs on the event loop and costs 10-40 µs per line whatever the line holds, so
// it only ever sees the start of a report (reportPrefix): 2 MiB of empty lines took 19 s
// and 1.8 GB when the whole message was parsed. RFC 3464 §2 and RFC 5965 §2 put the
// machine-readable part before the returned message, and only the headers of that message are
// read, so the start holds everything used here.
import PostalMime from 'postal-mime';

/** One per-recipient group of a DSN (RFC 3464 §2.3). */
export interface DsnRecipient {
  finalRecipient?: string;
  originalRecipient?: string;
  /** failed, delayed, delivered, relayed, expanded (lower case). */
  action: string;
  /** The enhanced status code, e.g. 5.1.1. */
  status?: string;
  /** The Diagnostic-Code value without its type, e.g. "550-5.1.1 The email account…". */
  diagnostic?: string;
  remoteMta?: string;
}

/** What the report tells about the message it is about (from the attached headers). */
export interface OriginalHeaders {
  messageId?: string;
  returnPath?: string;
  to?: string;
}

export type ParsedReport =
  | { kind: 'dsn'; recipients: DsnRecipient[]; reportingMta?: string; original: OriginalHeaders }
  | { kind: 'arf'; feedbackType: string; originalMailFrom?: string; originalRcptTo: string[]; userAgent?: string; original: OriginalHeaders }
  | { kind: 'other'; why: string };

/** Per-recipient groups read from one DSN (a DSN about more is read up to here). */
export const MAX_DSN_GROUPS = 100;
/** Characters kept of one report field (a Diagnostic-Code can be long; more is cut). */
const MAX_FIELD = 1000;
/** Characters of a report part or of the attached headers that are read. */
const MAX_PART_CHARS = 64 * 1024;

/** Bytes of a report given to postal-mime (the start of the message). */
export const MAX_PARSE_BYTES = 128 * 1024;
/**
 * Lines of a report given to postal-mime. Its cost is per line (about 10-40 µs for an empty
 * one, measured on 2 shared cores: 1000 empty lines 7-38 ms), while a real DSN or ARF report,
 * up to the end of the returned headers, runs to tens or a few hundred lines (an HTML notice
 * before the status part included).
 */
export const MAX_PARSE_LINES = 1000;
/**
 * Lines starting with "--" (boundary delimiters) given to postal-mime: a new MIME part costs
 * it about twice an empty line, and a real report has a handful (up to ~10 with nested
 * alternatives).
 */
export const MAX_PARSE_DELIMITERS = 64;

const PARSE_LIMITS = {
  forceRfc822Attachments: true,
  attachmentEncoding: 'utf8',
  maxRfc822NestingDepth: 0,
  maxNestingDepth: 16,
  maxHeadersSize: 256 * 1024,
} as const;

/**
 * Header-style fields (RFC 5322 §2.2, unfolded) in groups separated by blank lines; names
 * lower-cased; a repeated field keeps every value (Original-Rcpt-To may repeat).
 */
export function readFieldGroups(text: string, maxGroups: number): Array<Map<string, string[]>> {
  const groups: Array<Map<string, string[]>> = [];
  let cur: Map<string, string[]> | null = null;
  let last: { name: string; i: number } | null = null;
  const lines = text.slice(0, MAX_PART_CHARS).split(/\r?\n/);
  for (const line of lines) {
    if (line.trim() === '') {
      if (cur !== null && cur.size > 0) {
        groups.push(cur);
        if (groups.length >= maxGroups) return groups;
      }
      cur = null;
      last = null;
      continue;
    }
    if ((line[0] === ' ' || line[0] === '\t') && last !== null && cur !== null) {
      const vals = cur.get(last.name)!;
      vals[last.i] = (vals[last.i]! + ' ' + line.trim()).slice(0, MAX_FIELD);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[a-z0-9-]{1,64}$/.test(name)) continue;
    const value = line.slice(colon + 1).trim().slice(0, MAX_FIELD);
    cur ??= new Map();
    const vals = cur.get(name);
    if (vals) {
      if (vals.length < 100) vals.push(value);
      last = { name, i: vals.length - 1 };
    } else {
      cur.set(name, [value]);
      last = { name, i: 0 };
    }
  }
  if (cur !== null && cur.size > 0 && groups.length < maxGroups) groups.push(cur);
  return groups;
}

const first = (g: Map<string, string[]> | undefined, name: string): string | undefined => g?.get(name)?.[0];

/** "rfc822; a@b", "<a@b>", "a@b" → "a@b"; undefined when nothing address-like is there. */
export function addressOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  let v = value.trim();
  const semi = v.indexOf(';');
  if (semi >= 0 && /^[A-Za-z0-9-]+$/.test(v.slice(0, semi).trim())) v = v.slice(semi + 1).trim();
  const angle = /<([^<>\s]*)>/.exec(v);
  if (angle) v = angle[1]!;
  // eslint-disable-next-line no-control-regex
  if (v.length === 0 || v.length > 320 || /[\s<>\x00-\x1f\x7f]/.test(v)) return undefined;
  return v;
}

function originalHeaders(text: string | undefined): OriginalHeaders {
  if (text === undefined) return {};
  const end = text.search(/\r?\n\r?\n/);
  const head = readFieldGroups(end < 0 ? text : text.slice(0, end), 1)[0];
  const out: OriginalHeaders = {};
  const mid = first(head, 'message-id');
  if (mid !== undefined) {
    const m = /<[^<>\s]{1,250}>/.exec(mid);
    if (m) out.messageId = m[0];
  }
  const rp = addressOf(first(head, 'return-path'));
  if (rp !== undefined) out.returnPath = rp;
  const to = addressOf(first(head, 'to'));
  if (to !== undefined) out.to = to;
  return out;
}

function contentText(c: unknown): string | undefined {
  if (typeof c === 'string') return c;
  if (c instanceof ArrayBuffer) return Buffer.from(c).toString('utf8');
  if (ArrayBuffer.isView(c)) return Buffer.from(c.buffer, c.byteOffset, c.byteLength).toString('utf8');
  return undefined;
}

/**
 * The start of a report that is parsed: at most MAX_PARSE_BYTES, MAX_PARSE_LINES and
 * MAX_PARSE_DELIMITERS, cut after a line break when there is one. A cut mid-part leaves that
 * part short, which is harmless: the parts read come first, and of the returned message only
 * its headers are read.
 */
export function reportPrefix(raw: Buffer): Buffer {
  const head = raw.subarray(0, MAX_PARSE_BYTES);
  let end = 0; // the start of the current line
  let delimiters = 0;
  for (let lines = 0; lines < MAX_PARSE_LINES; lines++) {
    if (head[end] === 0x2d && head[end + 1] === 0x2d && ++delimiters > MAX_PARSE_DELIMITERS) return head.subarray(0, end);
    const nl = head.indexOf(0x0a, end);
    if (nl < 0) {
      if (head.length === raw.length) return raw;
      // Cut by size: end at the last whole line (the whole head if it has no line break).
      return end === 0 ? head : head.subarray(0, end);
    }
    end = nl + 1;
  }
  return head.subarray(0, end);
}

/** Parse a report; `{ kind: 'other' }` for anything that is not a DSN or ARF report. Never throws. */
export async function parseReport(raw: Buffer): Promise<ParsedReport> {
  let email: Awaited<ReturnType<typeof PostalMime.parse>>;
  try {
    email = await PostalMime.parse(reportPrefix(raw), PARSE_LIMITS);
  } catch (err) {
    return { kind: 'other', why: `not parseable MIME: ${(err as Error).message}`.slice(0, 200) };
  }
  const ctype = email.headers.find((h) => h.key === 'content-type')?.value ?? '';
  const m = /^\s*multipart\/report\s*;(.*)$/is.exec(ctype);
  const reportType = m ? /report-type\s*=\s*"?([A-Za-z0-9-]+)"?/i.exec(m[1]!)?.[1]?.toLowerCase() : undefined;
  if (reportType === undefined) return { kind: 'other', why: 'not a multipart/report' };
  const parts = email.attachments.map((a) => ({ type: a.mimeType.toLowerCase(), text: contentText(a.content) }));
  const orig = parts.find((p) => p.type === 'message/rfc822' || p.type === 'text/rfc822-headers' || p.type === 'message/global' || p.type === 'message/global-headers');
  const original = originalHeaders(orig?.text);
  if (reportType === 'delivery-status') {
    const ds = parts.find((p) => p.type === 'message/delivery-status' || p.type === 'message/global-delivery-status');
    if (ds?.text === undefined) return { kind: 'other', why: 'a delivery-status report without its message/delivery-status part' };
    const groups = readFieldGroups(ds.text, MAX_DSN_GROUPS + 1);
    const perMessage = groups[0];
    const recipients: DsnRecipient[] = [];
    for (const g of groups.slice(1)) {
      const action = first(g, 'action')?.toLowerCase();
      if (action === undefined) continue;
      const r: DsnRecipient = { action: action.slice(0, 20) };
      const fr = addressOf(first(g, 'final-recipient'));
      if (fr !== undefined) r.finalRecipient = fr;
      const or = addressOf(first(g, 'original-recipient'));
      if (or !== undefined) r.originalRecipient = or;
      const st = /^\s*([245]\.\d{1,3}\.\d{1,3})\b/.exec(first(g, 'status') ?? '');
      if (st) r.status = st[1]!;
      const dc = first(g, 'diagnostic-code');
      if (dc !== undefined) r.diagnostic = dc.replace(/^[A-Za-z0-9-]+\s*;\s*/, '');
      const rm = first(g, 'remote-mta');
      if (rm !== undefined) r.remoteMta = rm.replace(/^[A-Za-z0-9-]+\s*;\s*/, '').slice(0, 255);
      recipients.push(r);
    }
    const out: ParsedReport = { kind: 'dsn', recipients, original };
    const mta = first(perMessage, 'reporting-mta');
    if (mta !== undefined) out.reportingMta = mta.replace(/^[A-Za-z0-9-]+\s*;\s*/, '').slice(0, 255);
    return out;
  }
  if (reportType === 'feedback-report') {
    const fr = parts.find((p) => p.type === 'message/feedback-report');
    const g = fr?.text === undefined ? undefined : readFieldGroups(fr.text, 1)[0];
    const feedbackType = first(g, 'feedback-type')?.toLowerCase();
    if (feedbackType === undefined) return { kind: 'other', why: 'a feedback report without Feedback-Type' };
    const out: ParsedReport = { kind: 'arf', feedbackType: feedbackType.slice(0, 40), originalRcptTo: (g?.get('original-rcpt-to') ?? []).map(addressOf).filter((a): a is string => a !== undefined), original };
    const mf = addressOf(first(g, 'original-mail-from'));
    if (mf !== undefined) out.originalMailFrom = mf;
    const ua = first(g, 'user-agent');
    if (ua !== undefined) out.userAgent = ua.slice(0, 200);
    return out;
  }
  return { kind: 'other', why: `report-type ${reportType}` };
}
