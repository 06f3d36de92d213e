// Delivery status notifications: RFC 3464 (message/delivery-status) inside RFC 6522
// multipart/report, honouring the RFC 3461 NOTIFY/RET/ENVID/ORCPT parameters, marked
// Auto-Submitted: auto-replied (RFC 3834 §5) and sent from the null reverse-path (RFC 5321
// §4.5.5) so it can never cause another bounce. Pure: bytes in, bytes out, no I/O.
import { randomBytes } from 'node:crypto';
import type { MessageRecord, Recipient, ReplyRecord } from '../queue/store.js';

export type DsnAction = 'failed' | 'delayed' | 'delivered';

export interface DsnEntry {
  recipient: Recipient;
  reply: ReplyRecord;
  action: DsnAction;
}

export interface BuildDsnInput {
  message: MessageRecord;
  /** The recipients to report on (despite the name, any action). */
  failed: DsnEntry[];
  /** This host's name, for Reporting-MTA, From and Message-ID. */
  reportingMta: string;
  /** The queued message bytes, for part 3. */
  originalBody: Buffer;
  /** Default: new Date(message.receivedAt). */
  arrivalDate?: Date;
  /** Default: new Date(). */
  now?: Date;
  /** Cap on the returned original (default DSN_MAX_ORIGINAL_BYTES). */
  maxOriginalBytes?: number;
}

export interface DsnMessage {
  sender: '';
  recipients: [string];
  body: Buffer;
}

/**
 * Largest original returned with RET=FULL (Postfix's bounce_size_limit is 50 kB; we allow
 * more). A bigger message is returned as headers only, never truncated: a cut message/rfc822
 * is a broken MIME entity. The header copy itself is cut at a line boundary at this size.
 */
export const DSN_MAX_ORIGINAL_BYTES = 256 * 1024;

/** Longest value we put in a field; with the field name the line stays far below 998. */
const MAX_VALUE_CHARS = 900;
const CRLF = '\r\n';

/**
 * RFC 3461 §4.1: NOTIFY=NEVER forbids every DSN; an explicit list allows only its members;
 * no NOTIFY means "as if NOTIFY=FAILURE,DELAY" (the RFC allows either FAILURE or
 * FAILURE,DELAY; we take the second, as Postfix and Sendmail do). SUCCESS is never implied.
 */
export function notifyAllows(notify: string[] | undefined, action: DsnAction): boolean {
  const want = action === 'failed' ? 'FAILURE' : action === 'delayed' ? 'DELAY' : 'SUCCESS';
  if (notify === undefined || notify.length === 0) return want !== 'SUCCESS';
  const set = notify.map((n) => n.toUpperCase());
  if (set.includes('NEVER')) return false;
  return set.includes(want);
}

/**
 * Build the DSN for one message covering all listed recipients whose NOTIFY allows it, or null
 * when none does or the original sender is the null path (never bounce a bounce).
 *
 * Part 3 is the whole message only for RET=FULL. Without RET postern returns headers only:
 * RFC 3461 §4.3 leaves the choice to the MTA, and most bounces go to forged senders
 * (backscatter) — returning the body would reflect spam and leak content to a stranger, and
 * double the bytes of every bounce.
 */
export function buildDsn(input: BuildDsnInput): DsnMessage | null {
  const { message } = input;
  if (message.sender === '') return null;
  const entries = input.failed.filter((e) => notifyAllows(e.recipient.notify, e.action));
  if (entries.length === 0) return null;

  const now = input.now ?? new Date();
  const arrival = input.arrivalDate ?? new Date(message.receivedAt);
  const mta = hostName(input.reportingMta);
  const cap = input.maxOriginalBytes ?? DSN_MAX_ORIGINAL_BYTES;
  const anyFailed = entries.some((e) => e.action === 'failed');
  const anyDelayed = entries.some((e) => e.action === 'delayed');
  const subject = anyFailed ? 'Undelivered Mail Returned to Sender'
    : anyDelayed ? 'Delivery Status Notification (Delay)'
      : 'Delivery Status Notification (Success)';

  // Part 3: the original, whole or headers only.
  const original = originalPart(input.originalBody, message, cap);

  // Part 1: for humans.
  const human: string[] = [
    `This is the mail system at host ${mta}.`,
    '',
    anyFailed ? 'I\'m sorry to have to inform you that your message could not be delivered to one or more recipients.'
      : anyDelayed ? 'Your message could not be delivered yet. The mail system will keep trying; no action is required.'
        : 'Your message was successfully delivered to the destination(s) listed below.',
    '',
  ];
  for (const e of entries) {
    human.push(text(`<${e.recipient.address}>: ${e.action}: ${replyLine(e.reply)}`));
  }
  if (original.note !== undefined) human.push('', original.note);
  human.push('');

  // Part 2: for machines (RFC 3464 §2.2 per-message, §2.3 per-recipient fields).
  const ds: string[] = [field('Reporting-MTA', `dns; ${mta}`), field('X-Postern-Queue-ID', text(message.id))];
  if (message.envid !== undefined) ds.push(field('Original-Envelope-Id', text(message.envid)));
  ds.push(field('Arrival-Date', rfc5322Date(arrival)));
  for (const e of entries) {
    const r = e.recipient;
    ds.push('');
    if (r.orcpt !== undefined) ds.push(field('Original-Recipient', typedAddress(r.orcpt)));
    ds.push(field('Final-Recipient', typedAddress(`rfc822;${r.address}`)));
    ds.push(field('Action', e.action));
    ds.push(field('Status', statusOf(e.reply, e.action)));
    const host = remoteHost(e.reply.destination);
    if (host !== undefined) ds.push(field('Remote-MTA', `dns; ${host}`));
    ds.push(field('Diagnostic-Code', e.reply.code !== undefined ? `smtp; ${replyLine(e.reply)}` : `X-Postern; ${text(e.reply.text)}`));
    ds.push(field('Last-Attempt-Date', rfc5322Date(e.reply.at !== undefined ? new Date(e.reply.at) : now)));
  }
  ds.push('');

  const humanBuf = Buffer.from(human.join(CRLF), 'latin1');
  const dsBuf = Buffer.from(ds.join(CRLF), 'latin1');
  const boundary = pickBoundary([humanBuf, dsBuf, original.bytes]);

  const head = [
    field('From', `MAILER-DAEMON@${mta}`),
    field('To', `<${addr(message.sender)}>`),
    field('Subject', subject),
    field('Date', rfc5322Date(now)),
    field('Message-ID', `<${now.getTime().toString(36)}.${randomBytes(8).toString('hex')}@${mta}>`),
    field('Auto-Submitted', 'auto-replied'),
    field('MIME-Version', '1.0'),
    `Content-Type: multipart/report; report-type=delivery-status;${CRLF}\tboundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Description: Notification',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    '',
  ].join(CRLF);
  const mid1 = [
    '',
    `--${boundary}`,
    'Content-Description: Delivery report',
    'Content-Type: message/delivery-status',
    '',
    '',
  ].join(CRLF);
  const mid2 = [
    '',
    `--${boundary}`,
    `Content-Description: ${original.description}`,
    `Content-Type: ${original.contentType}`,
    `Content-Transfer-Encoding: ${original.eightBit ? '8bit' : '7bit'}`,
    '',
    '',
  ].join(CRLF);
  // The original part may not end in CRLF (a header copy always does); the CRLF before the
  // closing delimiter belongs to the delimiter (RFC 2046 §5.1.1).
  const tail = `${original.bytes.length > 0 && !endsWithCrlf(original.bytes) ? CRLF : ''}${CRLF}--${boundary}--${CRLF}`;

  const body = Buffer.concat([
    Buffer.from(head, 'utf8'), humanBuf, Buffer.from(mid1, 'latin1'), dsBuf,
    Buffer.from(mid2, 'latin1'), original.bytes, Buffer.from(tail, 'latin1'),
  ]);
  return { sender: '', recipients: [message.sender], body };
}

// ---- part 3 ------------------------------------------------------------------------------

interface OriginalPart {
  bytes: Buffer;
  contentType: 'message/rfc822' | 'text/rfc822-headers';
  description: string;
  eightBit: boolean;
  note?: string;
}

function originalPart(raw: Buffer, message: MessageRecord, cap: number): OriginalPart {
  // RFC 8689 §5: the report of a REQUIRETLS message returns no content it could leak; headers only.
  if (message.ret === 'FULL' && message.tlsRequired !== 'yes') {
    const full = toCrlf(raw);
    // A BINARYMIME body or a line over 998 octets can't travel in a DATA-transferred
    // message/rfc822 part; such a message is returned as headers only, as is an oversized one.
    let why: string | undefined;
    if (full.length > cap) why = 'the original message was too large to return in full';
    else if (message.bodyType === 'BINARYMIME' || hasLongLine(full)) why = 'the original message cannot be returned in full (binary content)';
    if (why === undefined) {
      return { bytes: full, contentType: 'message/rfc822', description: 'Undelivered Message', eightBit: hasHighBit(full) };
    }
    const h = headersOf(raw, cap);
    return { ...h, note: `Only the headers of your message are included: ${why}.` };
  }
  return headersOf(raw, cap);
}

function headersOf(raw: Buffer, cap: number): OriginalPart {
  const out: Buffer[] = [];
  let size = 0;
  for (const line of splitLines(raw)) {
    if (line.length === 0) break; // the blank line that ends the header section
    // A header line over 998 octets is cut into folded pieces (only our copy changes).
    for (let i = 0; i === 0 || i < line.length; i += 990) {
      const piece = Buffer.concat([i === 0 ? Buffer.alloc(0) : Buffer.from(' '), line.subarray(i, i + 990), Buffer.from(CRLF)]);
      if (size + piece.length > cap) return finish(out, true);
      out.push(piece);
      size += piece.length;
    }
  }
  return finish(out, false);

  function finish(parts: Buffer[], cut: boolean): OriginalPart {
    const bytes = Buffer.concat(parts);
    const r: OriginalPart = { bytes, contentType: 'text/rfc822-headers', description: 'Undelivered Message Headers', eightBit: hasHighBit(bytes) };
    if (cut) r.note = 'The headers of your message were too large and have been cut.';
    return r;
  }
}

/** Lines (views) without their terminator; CRLF, bare LF and bare CR all end a line. */
function* splitLines(b: Buffer): Generator<Buffer> {
  let start = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c === 0x0a || c === 0x0d) {
      yield b.subarray(start, i);
      if (c === 0x0d && b[i + 1] === 0x0a) i++;
      start = i + 1;
    }
  }
  if (start < b.length) yield b.subarray(start);
}

/** Bare LF / bare CR become CRLF, so the DSN has CRLF everywhere (returns `b` if already so). */
function toCrlf(b: Buffer): Buffer {
  let clean = true;
  for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, i + 1)) if (i === 0 || b[i - 1] !== 0x0d) { clean = false; break; }
  if (clean) for (let i = b.indexOf(0x0d); i >= 0; i = b.indexOf(0x0d, i + 1)) if (b[i + 1] !== 0x0a) { clean = false; break; }
  if (clean) return b;
  const lines = [...splitLines(b)];
  const endsOpen = b.length > 0 && b[b.length - 1] !== 0x0a && b[b.length - 1] !== 0x0d;
  const parts: Buffer[] = [];
  lines.forEach((l, i) => { parts.push(l); if (i < lines.length - 1 || !endsOpen) parts.push(Buffer.from(CRLF)); });
  return Buffer.concat(parts);
}

function hasLongLine(b: Buffer): boolean {
  let start = 0;
  for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, i + 1)) {
    if (i - start > 999) return true; // 998 octets + CR
    start = i + 1;
  }
  return b.length - start > 998;
}

function hasHighBit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) return true;
  return false;
}

function endsWithCrlf(b: Buffer): boolean {
  return b.length >= 2 && b[b.length - 2] === 0x0d && b[b.length - 1] === 0x0a;
}

function pickBoundary(parts: Buffer[]): string {
  for (;;) {
    const b = `=_postern_${randomBytes(12).toString('hex')}`;
    if (!parts.some((p) => p.includes(b))) return b;
  }
}

// ---- field values ------------------------------------------------------------------------

/**
 * Any text from outside (reply text, ORCPT, ENVID, queue id) in a field value: every run of
 * whitespace becomes one space (a run of spaces would fold into a continuation line of only
 * spaces, which RFC 5322 §3.2.2 forbids and which parsers, postern's own included, read as the
 * blank line that ends a recipient's group: a server could append groups of its own), other
 * control and non-ASCII characters '?', and the value is capped, so nothing can end the field,
 * start a new one or overflow a line.
 */
function text(s: string): string {
  return s.replace(/[\r\n\t ]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_VALUE_CHARS);
}

/** An address in a header: controls removed, UTF-8 (RFC 6532) kept. */
function addr(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f<>]/g, '?').slice(0, MAX_VALUE_CHARS);
}

/** Only host-name characters; anything else means a configuration bug, not an attack path. */
function hostName(s: string): string {
  const h = s.replace(/[^A-Za-z0-9.-]/g, '');
  return h.length > 0 ? h.slice(0, 255) : 'localhost';
}

/** "Name: value", folded at spaces after 78 columns (RFC 5322 §2.2.3). */
function field(name: string, value: string): string {
  let line = `${name}: ${value}`;
  const out: string[] = [];
  while (line.length > 78) {
    const at = line.lastIndexOf(' ', 78);
    if (at <= name.length + 1) break; // no place to fold; value is capped, so still < 998
    const head = line.slice(0, at);
    if (head.trim() === '') break; // never a line of only whitespace
    out.push(head);
    line = line.slice(at); // the continuation keeps the space as its leading WSP
  }
  out.push(line);
  return out.join(CRLF);
}

/**
 * "type;address" for Original-/Final-Recipient. ASCII addresses stay as they are (sanitized);
 * a non-ASCII one becomes RFC 6533 §3 "utf-8;" with utf-8-addr-xtext (\x{HEX} escapes), which
 * is legal inside a plain message/delivery-status.
 */
function typedAddress(typed: string): string {
  const semi = typed.indexOf(';');
  const type = semi > 0 ? typed.slice(0, semi).trim().toLowerCase() : 'rfc822';
  const a = semi > 0 ? typed.slice(semi + 1).trim() : typed;
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(a) || type === 'utf-8') {
    let out = '';
    for (const ch of a) {
      const cp = ch.codePointAt(0)!;
      if (cp >= 0x21 && cp <= 0x7e && ch !== '+' && ch !== '=' && ch !== '\\') out += ch;
      else out += `\\x{${cp.toString(16).toUpperCase()}}`;
    }
    return `utf-8; ${out.slice(0, MAX_VALUE_CHARS)}`;
  }
  return `${text(type.replace(/[^a-z0-9-]/g, '')) || 'rfc822'}; ${text(a)}`;
}

const ENHANCED_RE = /^[245]\.\d{1,3}\.\d{1,3}$/;

function statusOf(reply: ReplyRecord, action: DsnAction): string {
  if (reply.enhanced !== undefined && ENHANCED_RE.test(reply.enhanced)) return reply.enhanced;
  const c = reply.code;
  if (c !== undefined && c >= 200 && c < 600) return `${Math.floor(c / 100)}.0.0`;
  return action === 'failed' ? '5.0.0' : action === 'delayed' ? '4.0.0' : '2.0.0';
}

function replyLine(reply: ReplyRecord): string {
  const enh = reply.enhanced !== undefined && ENHANCED_RE.test(reply.enhanced) ? `${reply.enhanced} ` : '';
  return text(`${reply.code !== undefined ? `${reply.code} ` : ''}${enh}${reply.text}`);
}

/**
 * The host in a reply's destination, when it names one: "mx.example.org", "mx:25",
 * "smtp:mx.example.org:25", "[192.0.2.1]". A webhook origin or a maildir key is not a host.
 */
function remoteHost(dest: string | undefined): string | undefined {
  if (dest === undefined) return undefined;
  const d = dest.replace(/^(?:smtp|lmtp):/i, '');
  const m = /^(\[[0-9A-Fa-f:.v]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?)(?::\d{1,5})?$/.exec(d);
  // A single label ("maildir", "localhost") is more likely a key than an MTA's name.
  return m !== null && (m[1]!.startsWith('[') || m[1]!.includes('.')) ? m[1] : undefined;
}

function rfc5322Date(d: Date): string {
  return d.toUTCString().replace('GMT', '+0000');
}

/** Build the DSN for these recipients and queue it (null sender); null when none is due. */
export async function enqueueDsn(
  queue: { enqueue(env: { sender: string; recipients: Array<{ address: string }>; priority?: 0 | 1 | 2; tlsRequired?: 'yes' | 'no' }, body: Buffer): Promise<string> },
  reportingMta: string,
  message: MessageRecord,
  failed: DsnEntry[],
  originalBody: Buffer,
): Promise<string | null> {
  const dsn = buildDsn({ message, failed, reportingMta, originalBody });
  if (dsn === null) return null;
  // RFC 8689 §5: the report of a REQUIRETLS message travels under REQUIRETLS too.
  return queue.enqueue({ sender: '', recipients: dsn.recipients.map((address) => ({ address })), priority: message.priority, ...(message.tlsRequired === 'yes' ? { tlsRequired: 'yes' as const } : {}) }, dsn.body);
}
