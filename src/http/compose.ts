// Structured injection for POST /v1/messages: the JSON fields of a message (from, to, cc, bcc,
// subject, text, html, headers, attachments) checked and composed into RFC 5322 / MIME with
// nodemailer's MailComposer, plus the campaign form (per-recipient `substitutions`).
//
//   { "from": "a@b" | { "name": "A", "address": "a@b" },
//     "to": [addr…], "cc": [addr…], "bcc": [addr…],           (addr: string or {name,address})
//     "subject": "…", "text": "…", "html": "…",
//     "headers": { "X-Tag": "v", … },
//     "attachments": [{ "filename": "a.pdf", "content_base64": "…", "content_type": "application/pdf" }],
//     "substitutions": { "c@d": { "name": "Ann" }, … },
//     "priority": "urgent|normal|bulk", "send_at": "2030-01-01T00:00:00Z" }
//
// Header injection is impossible by construction: every string that ends up in a header (names,
// addresses, display names, subject, header names and values, filenames, content types, and
// substituted values) is refused with a 400 naming the field if it holds any control character
// (CR, LF, NUL, TAB, C1, U+2028/9); header names must be RFC 5322 field names; headers that
// shape the MIME structure (MIME-Version, Content-*) or that have their own field (From, To,
// Cc, Bcc, Subject, Date, Message-ID, Received) cannot be set through `headers`. Bcc is
// envelope only: it is never handed to the composer.
//
// Campaigns: with `substitutions`, each `to` address gets its own message (To: that address
// alone) with `{{key}}` placeholders in subject, text and html replaced by its values
// (`{{address}}` is the recipient's address unless given); in html the values are HTML-escaped.
// cc/bcc are refused with substitutions (each copy would go to them). A placeholder with no
// value becomes the empty string. Without substitutions, one message goes to to+cc+bcc; the
// route splits its envelope into chunks of maxRecipients.
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { isMailbox } from '../protocol/address.js';
import { failure, success, type Result } from '../lib/result.js';

/** Recipients (to + cc + bcc, or substitution entries) in one request. */
export const MAX_REQUEST_RECIPIENTS = 10_000;
export const MAX_HEADERS = 100;
export const MAX_ATTACHMENTS = 100;
/** Variables per recipient in `substitutions`. */
export const MAX_SUBSTITUTION_KEYS = 50;
/** RFC 5322 §2.1.1: a line is at most 998 octets; no single header value needs more. */
const MAX_HEADER_VALUE = 998;
const MAX_NAME = 256;
const MAX_ADDRESS_BYTES = 254;
// eslint-disable-next-line no-control-regex
export const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;
/** RFC 5322 §3.6.8 field-name: printable US-ASCII except the colon. */
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
const MIME_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}/g;
const RESERVED_HEADERS = new Set(['mime-version', 'from', 'to', 'cc', 'bcc', 'subject', 'date', 'message-id', 'received', 'sender', 'return-path']);

export const STRUCTURED_FIELDS = new Set(['from', 'to', 'cc', 'bcc', 'subject', 'text', 'html', 'headers', 'attachments', 'substitutions', 'priority', 'send_at', 'pool']);

export interface Mailbox {
  address: string;
  name?: string;
}

export interface Structured {
  from: Mailbox;
  to: Mailbox[];
  cc: Mailbox[];
  bcc: Mailbox[];
  subject: string;
  text?: string;
  html?: string;
  headers: [string, string][];
  attachments: { filename: string; content: Buffer; contentType?: string }[];
  /** Per `to` address (in `to` order) when the request is a campaign. */
  substitutions: Map<string, Record<string, string>> | null;
  /** Bytes of text, html and decoded attachments: a floor for the composed size. */
  contentBytes: number;
}

export type FieldError = { field: string; why: string };
export type StructuredResult = Result<Structured, FieldError>;

class Bad extends Error {
  constructor(
    readonly field: string,
    readonly why: string,
  ) {
    super(`${field}: ${why}`);
  }
}

function noControl(field: string, v: string): void {
  if (CONTROL.test(v)) throw new Bad(field, 'control characters (CR, LF, NUL, TAB, …) are not allowed');
}

function str(field: string, v: unknown, max: number, header: boolean): string {
  if (typeof v !== 'string') throw new Bad(field, 'must be a string');
  if (header) noControl(field, v);
  if (v.length > max) throw new Bad(field, `longer than ${max} characters`);
  return v;
}

function mailbox(field: string, v: unknown): Mailbox {
  let address: unknown = v;
  let name: string | undefined;
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (k !== 'address' && k !== 'name') throw new Bad(`${field}.${k}`, 'unknown field');
    address = o.address;
    if (o.name !== undefined) name = str(`${field}.name`, o.name, MAX_NAME, true);
    field = `${field}.address`;
  }
  if (typeof address !== 'string') throw new Bad(field, 'must be an address string or { "name", "address" }');
  noControl(field, address);
  if (Buffer.byteLength(address) > MAX_ADDRESS_BYTES || !isMailbox(address)) throw new Bad(field, `${JSON.stringify(address)} is not a mailbox (local@domain)`);
  return name === undefined || name === '' ? { address } : { address, name };
}

function mailboxes(field: string, v: unknown): Mailbox[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new Bad(field, 'must be an array of addresses');
  if (v.length > MAX_REQUEST_RECIPIENTS) throw new Bad(field, `${v.length} recipients, at most ${MAX_REQUEST_RECIPIENTS} per request`);
  return v.map((x, i) => mailbox(`${field}[${i}]`, x));
}

function decodeBase64(field: string, v: unknown): Buffer {
  if (typeof v !== 'string') throw new Bad(field, 'must be a base64 string');
  const b64 = v.replace(/[ \t\r\n]/g, '');
  if (b64.length % 4 !== 0 || !BASE64.test(b64)) throw new Bad(field, 'not valid base64');
  return Buffer.from(b64, 'base64');
}

/** Check every field of a structured request; sizes against maxMessageBytes. */
export function parseStructured(o: Record<string, unknown>, limits: { maxMessageBytes: number }): StructuredResult {
  try {
    return success(parse(o, limits));
  } catch (err) {
    if (err instanceof Bad) return failure({ field: err.field, why: err.why });
    throw err;
  }
}

function parse(o: Record<string, unknown>, limits: { maxMessageBytes: number }): Structured {
  for (const k of Object.keys(o)) if (!STRUCTURED_FIELDS.has(k)) throw new Bad(k, 'unknown field');
  if (o.from === undefined) throw new Bad('from', 'required (the sender of a structured message)');
  const from = mailbox('from', o.from);
  const to = mailboxes('to', o.to);
  const cc = mailboxes('cc', o.cc);
  const bcc = mailboxes('bcc', o.bcc);
  if (to.length + cc.length + bcc.length === 0) throw new Bad('to', 'at least one recipient in to, cc or bcc');
  if (to.length + cc.length + bcc.length > MAX_REQUEST_RECIPIENTS) {
    throw new Bad('to', `${to.length + cc.length + bcc.length} recipients in to+cc+bcc, at most ${MAX_REQUEST_RECIPIENTS} per request`);
  }
  const subject = o.subject === undefined ? '' : str('subject', o.subject, MAX_HEADER_VALUE, true);
  let contentBytes = 0;
  const body = (field: 'text' | 'html'): string | undefined => {
    const v = o[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new Bad(field, 'must be a string');
    contentBytes += Buffer.byteLength(v);
    return v;
  };
  const text = body('text');
  const html = body('html');

  const headers: [string, string][] = [];
  if (o.headers !== undefined) {
    if (typeof o.headers !== 'object' || o.headers === null || Array.isArray(o.headers)) throw new Bad('headers', 'must be an object of name: value');
    const entries = Object.entries(o.headers as Record<string, unknown>);
    if (entries.length > MAX_HEADERS) throw new Bad('headers', `at most ${MAX_HEADERS} headers`);
    for (const [name, value] of entries) {
      const f = `headers[${JSON.stringify(name)}]`;
      noControl(f, name);
      if (!FIELD_NAME.test(name) || name.length > 76) throw new Bad(f, 'not an RFC 5322 field name (printable ASCII, no colon or space, at most 76 characters)');
      const lower = name.toLowerCase();
      if (lower === 'x-postern-pool') throw new Bad(f, 'the pool is the request\'s "pool" field, not a header');
      if (RESERVED_HEADERS.has(lower) || lower.startsWith('content-')) {
        throw new Bad(f, `${name} cannot be set here: MIME structure headers (MIME-Version, Content-*) are built by postern, and From/To/Cc/Bcc/Subject/Date/Message-ID have their own fields`);
      }
      headers.push([name, str(f, value, MAX_HEADER_VALUE, true)]);
    }
  }

  const attachments: Structured['attachments'] = [];
  if (o.attachments !== undefined) {
    if (!Array.isArray(o.attachments)) throw new Bad('attachments', 'must be an array');
    if (o.attachments.length > MAX_ATTACHMENTS) throw new Bad('attachments', `at most ${MAX_ATTACHMENTS} attachments`);
    o.attachments.forEach((a: unknown, i: number) => {
      const f = `attachments[${i}]`;
      if (typeof a !== 'object' || a === null || Array.isArray(a)) throw new Bad(f, 'must be { filename, content_base64, content_type }');
      const ao = a as Record<string, unknown>;
      for (const k of Object.keys(ao)) if (k !== 'filename' && k !== 'content_base64' && k !== 'content_type') throw new Bad(`${f}.${k}`, 'unknown field');
      const filename = str(`${f}.filename`, ao.filename, 255, true);
      if (filename === '') throw new Bad(`${f}.filename`, 'must not be empty');
      // A size check before decoding: base64 is 4/3 of the bytes.
      if (typeof ao.content_base64 === 'string' && ao.content_base64.length > (limits.maxMessageBytes * 4) / 3 + 4) {
        throw new Bad(`${f}.content_base64`, `larger than the message limit (${limits.maxMessageBytes} bytes, POSTERN_MAX_MESSAGE_BYTES)`);
      }
      const content = decodeBase64(`${f}.content_base64`, ao.content_base64);
      contentBytes += content.length;
      const att: Structured['attachments'][number] = { filename, content };
      if (ao.content_type !== undefined) {
        const ct = str(`${f}.content_type`, ao.content_type, 127, true);
        if (!MIME_TYPE.test(ct)) throw new Bad(`${f}.content_type`, 'must be a MIME type like application/pdf (no parameters)');
        att.contentType = ct;
      }
      attachments.push(att);
    });
  }
  if (contentBytes > limits.maxMessageBytes) {
    throw new Bad('attachments', `text, html and attachments are ${contentBytes} bytes, over the message limit (${limits.maxMessageBytes}, POSTERN_MAX_MESSAGE_BYTES)`);
  }

  let substitutions: Structured['substitutions'] = null;
  if (o.substitutions !== undefined) {
    if (typeof o.substitutions !== 'object' || o.substitutions === null || Array.isArray(o.substitutions)) {
      throw new Bad('substitutions', 'must be an object { "address": { "key": "value" } }');
    }
    if (cc.length > 0 || bcc.length > 0) throw new Bad('substitutions', 'a campaign (substitutions) sends one message per to address: cc and bcc are not allowed with it');
    const subs = o.substitutions as Record<string, unknown>;
    const inTo = new Set(to.map((m) => m.address.toLowerCase()));
    for (const addr of Object.keys(subs)) if (!inTo.has(addr.toLowerCase())) throw new Bad(`substitutions[${JSON.stringify(addr)}]`, 'not one of the to addresses');
    const lowerSubs = new Map<string, unknown>();
    for (const [k, v] of Object.entries(subs)) lowerSubs.set(k.toLowerCase(), v);
    substitutions = new Map();
    for (const m of to) {
      const f = `substitutions[${JSON.stringify(m.address)}]`;
      const v = lowerSubs.get(m.address.toLowerCase());
      const vars: Record<string, string> = { address: m.address };
      if (v !== undefined) {
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Bad(f, 'must be an object of key: value');
        const entries = Object.entries(v as Record<string, unknown>);
        if (entries.length > MAX_SUBSTITUTION_KEYS) throw new Bad(f, `${entries.length} variables, at most ${MAX_SUBSTITUTION_KEYS}`);
        for (const [k, x] of entries) {
          const value = typeof x === 'number' ? String(x) : x;
          // Values may land in the subject: header rules apply to all of them.
          vars[k] = str(`${f}.${k}`, value, MAX_HEADER_VALUE, true);
        }
      }
      substitutions.set(m.address, vars);
    }
  }

  const s: Structured = { from, to, cc, bcc, subject, headers, attachments, substitutions, contentBytes };
  if (text !== undefined) s.text = text;
  if (html !== undefined) s.html = html;
  return s;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);

export function substitute(template: string, vars: Record<string, string>, html = false): string {
  return template.replace(PLACEHOLDER, (_, key: string) => {
    const v = Object.hasOwn(vars, key) ? vars[key]! : '';
    return html ? escapeHtml(v) : v;
  });
}

/**
 * Compose one message. `to` overrides the To header (a campaign's single recipient) and `vars`
 * fills placeholders. Bcc is never passed to the composer. Resolves with the CRLF message.
 */
export async function composeMessage(s: Structured, o: { messageId: string; date: Date; to?: Mailbox[]; vars?: Record<string, string> }): Promise<Buffer> {
  const vars = o.vars;
  const opts: Mail.Options = {
    from: s.from,
    subject: vars ? substitute(s.subject, vars) : s.subject,
    messageId: o.messageId,
    date: o.date,
    headers: s.headers.map(([key, value]) => ({ key, value })),
  };
  const to = o.to ?? s.to;
  if (to.length > 0) opts.to = to;
  if (o.to === undefined && s.cc.length > 0) opts.cc = s.cc;
  if (s.text !== undefined) opts.text = vars ? substitute(s.text, vars) : s.text;
  if (s.html !== undefined) opts.html = vars ? substitute(s.html, vars, true) : s.html;
  if (s.attachments.length > 0) {
    opts.attachments = s.attachments.map((a) => (a.contentType !== undefined ? { filename: a.filename, content: a.content, contentType: a.contentType } : { filename: a.filename, content: a.content }));
  }
  // With neither text nor html, an empty text part keeps the message well formed.
  if (opts.text === undefined && opts.html === undefined && opts.attachments === undefined) opts.text = '';
  return new MailComposer(opts).compile().build();
}
