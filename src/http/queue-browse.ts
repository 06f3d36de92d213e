// The message browser's listing (GET /v1/queue/messages, docs/http-api.md): the query
// parameters checked one by one (a 400 naming the parameter), and a scan of the records in id
// (arrival) order that stops at a full page of matches or after MAX_SCAN records, whichever
// comes first. There is no index by sender, recipient or state (held), so a filter is a scan;
// the bound makes one request cost O(MAX_SCAN) reads whatever the queue's size and however
// rare the matches, and the cursor lets the client go on where the scan stopped.
import { isId } from '../queue/ids.js';
import type { MessageRecord } from '../queue/types.js';
import { failure, success, type Result } from '../lib/result.js';
import { LIST_STATES, listState, type ListState } from '../queue/list-state.js';
import { fail, limitParam, type HttpResult } from './respond.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
/**
 * Records read at most per request. Reading and decoding one (three recipients) measured 5 to
 * 10 µs on the shared 2-core test machine, so a request that matches nothing holds the event
 * loop for 25 to 50 ms: the SMTP sessions on the same loop wait that long, once per request.
 */
export const MAX_SCAN = 5_000;
/** Longest search text taken (an address is at most 254 octets). */
const MAX_TEXT = 256;
const PARAMS = new Set(['limit', 'after', 'id', 'sender', 'recipient', 'domain', 'state']);
// C0, DEL, C1 and the Unicode line separators: nothing in an address, refused as typos or probes.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;

export interface BrowseFilter {
  /** Lower-case start of the id. */
  idPrefix?: string;
  /** Lower-case text the sender contains; '' = the null sender <> only. */
  sender?: string;
  /** Lower-case text some recipient's address contains. */
  recipient?: string;
  /** Messages with a pending recipient in this domain (lower case, no final dot). */
  domain?: string;
  state?: ListState;
}

export interface BrowseQuery {
  filter: BrowseFilter;
  limit: number;
  /** Exclusive cursor: the `next` of the previous page. */
  after?: string;
}

const bad = (param: string, why: string): { ok: false; error: HttpResult } => failure(fail('PST_HTTP_BAD_FIELD', `${param}: ${why}`));

function text(param: string, v: string): Result<string, HttpResult> {
  if (v === '' || v.length > MAX_TEXT) return bad(param, `must be 1 to ${MAX_TEXT} characters`);
  if (CONTROL.test(v)) return bad(param, 'control characters are not allowed');
  return success(v.toLowerCase());
}

/** The query string of a listing, checked: every parameter known, given once, well formed. */
export function parseBrowseQuery(url: URL): Result<BrowseQuery, HttpResult> {
  const seen = new Set<string>();
  for (const k of url.searchParams.keys()) {
    if (!PARAMS.has(k)) return bad(k.slice(0, 40), `unknown parameter (known: ${[...PARAMS].join(', ')})`);
    if (seen.has(k)) return bad(k, 'given more than once');
    seen.add(k);
  }
  const limit = limitParam(url, DEFAULT_LIMIT, MAX_LIMIT);
  if (!limit.ok) return limit;
  const q: BrowseQuery = { filter: {}, limit: limit.value };
  const p = (k: string): string | null => url.searchParams.get(k);

  const after = p('after');
  if (after !== null) {
    if (after.length > 32 || !isId(after)) return bad('after', 'must be a message id (the `next` of the previous page)');
    q.after = after;
  }
  const id = p('id');
  if (id !== null) {
    const lower = id.toLowerCase();
    if (!/^[0-9a-v]{1,32}$/.test(lower)) return bad('id', 'must be a message id or its start (1 to 32 of 0-9, a-v)');
    q.filter.idPrefix = lower;
  }
  const sender = p('sender');
  if (sender !== null) {
    if (sender === '<>') q.filter.sender = '';
    else {
      const t = text('sender', sender);
      if (!t.ok) return t;
      q.filter.sender = t.value;
    }
  }
  const recipient = p('recipient');
  if (recipient !== null) {
    const t = text('recipient', recipient);
    if (!t.ok) return t;
    q.filter.recipient = t.value;
  }
  const domain = p('domain');
  if (domain !== null) {
    const d = domain.toLowerCase().replace(/\.$/, '');
    if (d === '' || d.length > 255 || /[\s@]/.test(d) || CONTROL.test(d)) return bad('domain', 'must be a domain name (no @, spaces or controls)');
    q.filter.domain = d;
  }
  const state = p('state');
  if (state !== null) {
    if (!(LIST_STATES as readonly string[]).includes(state)) return bad('state', `must be one of ${LIST_STATES.join(', ')}`);
    q.filter.state = state as ListState;
  }
  return success(q);
}

export function matchesFilter(m: MessageRecord, f: BrowseFilter, nowMs: number): boolean {
  if (f.state !== undefined && listState(m, nowMs) !== f.state) return false;
  if (f.sender !== undefined && (f.sender === '' ? m.sender !== '' : !m.sender.toLowerCase().includes(f.sender))) return false;
  if (f.domain !== undefined && !m.recipients.some((r) => r.state === 'pending' && r.domain === f.domain)) return false;
  if (f.recipient !== undefined) {
    const needle = f.recipient;
    if (!m.recipients.some((r) => r.address.toLowerCase().includes(needle))) return false;
  }
  return true;
}

export interface BrowsePage {
  messages: MessageRecord[];
  /** The cursor for the following page (?after=), or null when the scan reached the end. */
  next: string | null;
  /** Records read for this page. */
  scanned: number;
  /** The scan stopped at its bound before the page was full: `next` goes on from there. */
  scanLimited: boolean;
}

/**
 * One page of the records from `records` (id order, after the cursor; with an id prefix, from
 * the prefix on: see scanStart) that match the filter. With an id prefix the scan ends at the
 * first id past it (ids sort as strings).
 */
export function browsePage(records: Iterable<MessageRecord>, q: BrowseQuery, nowMs: number, maxScan = MAX_SCAN): BrowsePage {
  const page: MessageRecord[] = [];
  const prefix = q.filter.idPrefix;
  let scanned = 0;
  for (const m of records) {
    scanned++;
    if (prefix !== undefined && m.id > prefix && !m.id.startsWith(prefix)) return { messages: page, next: null, scanned, scanLimited: false };
    if ((prefix === undefined || m.id.startsWith(prefix)) && matchesFilter(m, q.filter, nowMs)) {
      // One match more than the page: there are more, and they start after the page's last.
      if (page.length === q.limit) return { messages: page, next: page[page.length - 1]!.id, scanned, scanLimited: false };
      page.push(m);
    }
    if (scanned >= maxScan) return { messages: page, next: m.id, scanned, scanLimited: page.length < q.limit };
  }
  return { messages: page, next: null, scanned, scanLimited: false };
}

/** Where the scan starts: after the cursor, or at the id prefix when the cursor is before it. */
export function scanStart(q: BrowseQuery): { after?: string; start?: string } {
  const prefix = q.filter.idPrefix;
  if (q.after !== undefined && (prefix === undefined || q.after >= prefix)) return { after: q.after };
  return prefix === undefined ? {} : { start: prefix };
}
