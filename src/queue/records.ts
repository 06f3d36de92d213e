// The stored form of a message record: one msgpackr Packr whose shared structures are a
// code constant, and the builders that give every record the same keys in the same order so
// that it hits them. Records hold no Buffers (the body lives in its own sub-database).
import { Packr } from 'msgpackr';
import { PosternError } from '../errors.js';
import type {
  EnvelopeInput,
  MessageRecord,
  MessageState,
  Priority,
  Recipient,
  RecipientInput,
  RecipientState,
  ReplyRecord,
  AttemptRecord,
} from './types.js';

// Why a constant and not lmdb-js's sharedStructuresKey: structures learned at run time must
// be saved durably before any record that uses them, and one minted inside a transaction that
// then fails would be lost while records keep pointing at it. A fixed list is never written,
// never lost; an unexpected shape still encodes (msgpackr writes its key list inline in that
// one value), it is only bigger.
// APPEND-ONLY. Stored records refer to these by index (record ids 0x40 + i): never reorder,
// rename or remove an entry, only add new ones at the end.
const MESSAGE_KEYS = [
  'id', 'seq', 'priority', 'state', 'receivedAt', 'nextAttemptAt', 'attempts', 'size',
  'sender', 'recipients', 'mtPriority', 'ret', 'envid', 'bodyType', 'smtputf8',
  'declaredSize', 'client', 'notBefore', 'lease',
];
const RECIPIENT_KEYS = ['address', 'domain', 'notify', 'orcpt', 'state', 'attempts', 'lastReply'];
const REPLY_KEYS = ['code', 'enhanced', 'text', 'command', 'transient', 'destination', 'at'];
const CLIENT_KEYS = ['ip', 'helo', 'tls', 'authUser', 'hostname'];
const LEASE_KEYS = ['owner', 'expiresAt'];
// The message keys plus `waitFor` (records since the wait index). A record of the first form
// (structure 0: written before, or never given a waitFor key) still decodes, without it.
const MESSAGE_KEYS_2 = [...MESSAGE_KEYS, 'waitFor'];
// Then `pool` (records since the X-Postern-Pool header and the API's pool field): the pool a
// trusted client chose. Records of the two forms above still decode, without it.
const MESSAGE_KEYS_3 = [...MESSAGE_KEYS_2, 'pool'];
// Then a recipient's `history` (its last attempts, ATTEMPT_KEYS each): added at its first
// attempt, so an untried recipient, and every recipient of an older record, keeps the first form.
const RECIPIENT_KEYS_2 = [...RECIPIENT_KEYS, 'history'];
const ATTEMPT_KEYS = ['at', 'code', 'enhanced', 'text', 'destination'];
// Then `tlsRequired` (RFC 8689: REQUIRETLS or "TLS-Required: No"). Older forms decode without it.
const MESSAGE_KEYS_4 = [...MESSAGE_KEYS_3, 'tlsRequired'];
const STRUCTURES = [MESSAGE_KEYS, RECIPIENT_KEYS, REPLY_KEYS, CLIENT_KEYS, LEASE_KEYS, MESSAGE_KEYS_2, MESSAGE_KEYS_3, RECIPIENT_KEYS_2, ATTEMPT_KEYS, MESSAGE_KEYS_4];

const packr = new Packr({
  structures: STRUCTURES.map((keys) => keys.slice()),
  // No room for run-time shared structures: other shapes go inline (see the header).
  maxSharedStructures: STRUCTURES.length,
  useRecords: true,
});

/** Encode a record built by the functions below (any object encodes; those are compact). */
export function encodeRecord(rec: MessageRecord): Buffer {
  return packr.pack(rec);
}

/**
 * Decode a stored record and check that it is one: the bytes under key `id` decode to an
 * object with every field that indexes, counters and transitions use, of the right type.
 * Throws an Error saying why not (msgpackr's own error for bytes that do not decode at all):
 * callers treat such a record as corrupt (record-store.ts), never as a message.
 * `bytes` may be an lmdb-js reusable buffer: everything is copied into JS values here
 * (records hold no Buffers), so the result outlives the buffer.
 */
export function decodeRecord(bytes: Uint8Array, id: string): MessageRecord {
  const rec = packr.unpack(bytes) as unknown;
  const why = recordProblem(rec, id);
  if (why !== null) throw new PosternError('PST_ERR_QUEUE_CORRUPT_RECORD', why);
  return rec as MessageRecord;
}

const STATES = new Set(['ready', 'leased', 'held']);
const RECIPIENT_STATES = new Set(['pending', 'delivered', 'failed']);
const isTime = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
const optional = (v: unknown, type: 'string' | 'number' | 'boolean'): boolean => v === undefined || typeof v === type;

/** Why a decoded value is not a usable record stored under `id`, or null. */
function recordProblem(v: unknown, id: string): string | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return `not a record (${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v})`;
  const r = v as Record<string, unknown>;
  if (r['id'] !== id) return `its id ${JSON.stringify(r['id'])} is not its key`;
  if (!Number.isSafeInteger(r['seq']) || (r['seq'] as number) < 0) return 'bad seq';
  if (r['priority'] !== 0 && r['priority'] !== 1 && r['priority'] !== 2) return 'bad priority';
  if (typeof r['state'] !== 'string' || !STATES.has(r['state'])) return 'bad state';
  if (!isTime(r['receivedAt']) || !isTime(r['nextAttemptAt'])) return 'bad times';
  if (!isTime(r['attempts']) || !isTime(r['size'])) return 'bad attempts or size';
  if (typeof r['sender'] !== 'string') return 'bad sender';
  const rcpts = r['recipients'];
  if (!Array.isArray(rcpts) || rcpts.length === 0) return 'no recipients';
  for (const x of rcpts as unknown[]) {
    if (x === null || typeof x !== 'object') return 'bad recipient';
    const rc = x as Record<string, unknown>;
    if (typeof rc['address'] !== 'string' || typeof rc['domain'] !== 'string') return 'bad recipient address';
    if (typeof rc['state'] !== 'string' || !RECIPIENT_STATES.has(rc['state']) || !isTime(rc['attempts'])) return 'bad recipient state';
    // Read by delivery and the DSN writer: a wrong type there would throw on every attempt.
    if (rc['notify'] !== undefined && !(Array.isArray(rc['notify']) && (rc['notify'] as unknown[]).every((n) => typeof n === 'string'))) return 'bad recipient notify';
    if (!optional(rc['orcpt'], 'string')) return 'bad recipient orcpt';
    if (rc['lastReply'] !== undefined && (rc['lastReply'] === null || typeof rc['lastReply'] !== 'object')) return 'bad recipient reply';
    if (rc['history'] !== undefined && !isHistory(rc['history'])) return 'bad recipient history';
  }
  if (!optional(r['envid'], 'string') || !optional(r['ret'], 'string') || !optional(r['bodyType'], 'string') || !optional(r['mtPriority'], 'number') || !optional(r['smtputf8'], 'boolean')) return 'bad envelope parameters';
  if (r['client'] !== undefined && (r['client'] === null || typeof r['client'] !== 'object')) return 'bad client';
  const w = r['waitFor'];
  if (w !== undefined && !(Array.isArray(w) && (w as unknown[]).every((d) => typeof d === 'string'))) return 'bad waitFor';
  if (!optional(r['pool'], 'string')) return 'bad pool';
  if (r['tlsRequired'] !== undefined && r['tlsRequired'] !== 'yes' && r['tlsRequired'] !== 'no') return 'bad tlsRequired';
  if (r['state'] === 'leased') {
    const l = r['lease'] as Record<string, unknown> | null | undefined;
    if (l === null || typeof l !== 'object' || typeof l['owner'] !== 'string' || !isTime(l['expiresAt'])) return 'leased without a lease';
  }
  return null;
}

/** Read by the message view and `queue show`: each entry's fields of the right type. */
function isHistory(h: unknown): boolean {
  if (!Array.isArray(h)) return false;
  for (const e of h as unknown[]) {
    if (e === null || typeof e !== 'object') return false;
    const a = e as Record<string, unknown>;
    if (!isTime(a['at']) || typeof a['text'] !== 'string' || !optional(a['code'], 'number') || !optional(a['enhanced'], 'string') || !optional(a['destination'], 'string')) return false;
  }
  return true;
}

/** Lower-cased part after the last '@'; '' for an address without one (RFC 5321 <postmaster>). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

/**
 * The most of a reply's text a record keeps as a recipient's last reply. A remote server
 * chooses it (up to the reply reader's 64 KiB), and the record is rewritten on every attempt:
 * uncut, 50 recipients could make every rewrite 3 MB. 2,048 characters hold any real reply
 * (RFC 5321 §4.5.3.1.5: 512 octets a line) several lines deep; bounces quote the kept text.
 */
export const LAST_REPLY_TEXT_CHARS = 2048;

export function makeReply(r: ReplyRecord | undefined, at: number): ReplyRecord | undefined {
  if (r === undefined) return undefined;
  return {
    code: r.code,
    enhanced: r.enhanced,
    text: cutText(typeof r.text === 'string' ? r.text : String(r.text ?? ''), LAST_REPLY_TEXT_CHARS),
    command: r.command,
    transient: r.transient,
    destination: r.destination,
    at: r.at ?? at,
  };
}

/**
 * The bounds of a recipient's history. A remote server chooses its reply text (up to the
 * reply reader's 64 KiB), so every stored part is cut: an entry is at most about
 * HISTORY_TEXT_CHARS + HISTORY_DESTINATION_CHARS + 40 bytes, whatever the server sends. The
 * record is rewritten on every attempt, so the depth shrinks as recipients grow:
 * HISTORY_RECORD_ENTRIES entries for the whole record, HISTORY_ATTEMPTS at most per recipient
 * (5 up to 50 recipients, 1 at 126 to 250, none past 250: lastReply alone says the latest).
 */
export const HISTORY_ATTEMPTS = 5;
export const HISTORY_RECORD_ENTRIES = 250;
export const HISTORY_TEXT_CHARS = 256;
export const HISTORY_DESTINATION_CHARS = 128;
const ENHANCED_CHARS = 16;

/** How many attempts each recipient of a `recipients`-recipient record keeps. */
export function historyDepth(recipients: number): number {
  return Math.min(HISTORY_ATTEMPTS, Math.floor(HISTORY_RECORD_ENTRIES / Math.max(1, recipients)));
}

/** `s` cut to at most `max` UTF-16 units, ending in '…' when cut, never splitting a surrogate pair. */
export function cutText(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max - 1;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end--;
  return s.slice(0, end) + '…';
}

/** One attempt's entry, keys in ATTEMPT_KEYS order, every part bounded. */
export function makeAttempt(r: ReplyRecord | undefined, at: number): AttemptRecord {
  const code = r?.code;
  return {
    at: r?.at ?? at,
    code: typeof code === 'number' && Number.isInteger(code) && code >= 0 && code <= 999 ? code : undefined,
    enhanced: typeof r?.enhanced === 'string' ? cutText(r.enhanced, ENHANCED_CHARS) : undefined,
    text: cutText(typeof r?.text === 'string' ? r.text : String(r?.text ?? ''), HISTORY_TEXT_CHARS),
    destination: typeof r?.destination === 'string' ? cutText(r.destination, HISTORY_DESTINATION_CHARS) : undefined,
  };
}

/**
 * Append an attempt to the recipient's history, oldest first, keeping the last `depth`
 * (historyDepth of the record). With depth 0 the recipient keeps none (and loses any it had).
 */
export function pushAttempt(r: Recipient, reply: ReplyRecord | undefined, at: number, depth: number): void {
  if (depth <= 0) {
    if (r.history !== undefined) r.history = undefined;
    return;
  }
  const h = r.history ?? [];
  h.push(makeAttempt(reply, at));
  if (h.length > depth) h.splice(0, h.length - depth);
  r.history = h;
}

export function makeRecipient(r: RecipientInput): Recipient {
  return {
    address: r.address,
    domain: domainOf(r.address),
    notify: r.notify === undefined ? undefined : r.notify.slice(),
    orcpt: r.orcpt,
    state: 'pending' as RecipientState,
    attempts: 0,
    lastReply: undefined,
    // No `history` key: added at the first attempt (RECIPIENT_KEYS_2), so a new record is no
    // bigger than before until something was tried.
  };
}

export function makeLease(owner: string, expiresAt: number): { owner: string; expiresAt: number } {
  return { owner, expiresAt };
}

function makeClient(c: EnvelopeInput['client']): EnvelopeInput['client'] {
  if (c === undefined) return undefined;
  return { ip: c.ip, helo: c.helo, tls: c.tls, authUser: c.authUser, hostname: c.hostname };
}

/** The new record of an accepted message, keys in MESSAGE_KEYS_4 order. */
export function makeMessage(
  env: EnvelopeInput,
  id: string,
  seq: number,
  priority: Priority,
  receivedAt: number,
  nextAttemptAt: number,
  size: number,
): MessageRecord {
  const recipients = new Array<Recipient>(env.recipients.length);
  for (let i = 0; i < recipients.length; i++) recipients[i] = makeRecipient(env.recipients[i]!);
  return {
    id,
    seq,
    priority,
    state: (env.hold ? 'held' : 'ready') as MessageState,
    receivedAt,
    nextAttemptAt,
    attempts: 0,
    size,
    sender: env.sender,
    recipients,
    mtPriority: env.mtPriority,
    ret: env.ret,
    envid: env.envid,
    bodyType: env.bodyType,
    smtputf8: env.smtputf8,
    declaredSize: env.declaredSize,
    client: makeClient(env.client),
    notBefore: env.notBefore,
    lease: undefined,
    waitFor: undefined,
    pool: env.pool,
    tlsRequired: env.tlsRequired,
  };
}

/** True when no recipient is pending any more (the message leaves the queue). */
export function isFinal(rec: MessageRecord): boolean {
  for (const r of rec.recipients) if (r.state === 'pending') return false;
  return true;
}
