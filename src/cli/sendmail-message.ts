// What `postern sendmail` does to the message before it submits it, without I/O: the input's
// end (a lone "." line unless -i, as sendmail(1)), its line ends made CRLF (the node refuses a
// bare CR or LF: docs/parser.md), the recipients of -t taken from To/Cc/Bcc with Bcc removed,
// and the From, Date and Message-ID a local submission lacks added, as Sendmail and Postfix's
// cleanup add them (RFC 5322 §3.6 requires From and Date; the node adds neither).
import { randomBytes } from 'node:crypto';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import { toCrlf } from '../http/raw-message.js';

export { toCrlf };

/** Where the input ends: -i reads to the end; otherwise a line of a single "." ends it. */
export class InputReader {
  readonly #ignoreDots: boolean;
  readonly #maxBytes: number;
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  /** The input's last 3 bytes so far, for a "." line split across chunks; "\n" at the start (a line starts there). */
  #tail = Buffer.from('\n');
  /** The input ended with a "." line (or reached the end); more is not read. */
  done = false;
  tooBig = false;

  constructor(ignoreDots: boolean, maxBytes: number) {
    this.#ignoreDots = ignoreDots;
    this.#maxBytes = maxBytes;
  }

  /** Take one chunk; true when nothing more is wanted (the "." line, or too big). */
  push(chunk: Buffer): boolean {
    if (this.done) return true;
    if (!this.#ignoreDots) {
      // A "." alone on a line: after LF (or at the start), "." then LF or CRLF.
      const joined = Buffer.concat([this.#tail, chunk]);
      const m = /\n\.\r?\n/.exec(joined.toString('latin1'));
      if (m !== null) {
        const dotAt = m.index + 1 - this.#tail.length;
        // dotAt < 0: the "." line began in the previous chunk (its LF was kept in #tail).
        if (dotAt >= 0) this.#add(chunk.subarray(0, dotAt));
        else this.#trim(-dotAt);
        this.done = true;
        return true;
      }
      this.#tail = Buffer.from(joined.subarray(Math.max(0, joined.length - 3)));
    }
    this.#add(chunk);
    return this.tooBig;
  }

  #add(b: Buffer): void {
    if (b.length === 0) return;
    this.#bytes += b.length;
    if (this.#bytes > this.#maxBytes) {
      this.tooBig = true;
      this.done = true;
      return;
    }
    this.#chunks.push(b);
  }

  /** Drop the last n bytes taken (the start of a "." line seen only with the next chunk). */
  #trim(n: number): void {
    while (n > 0 && this.#chunks.length > 0) {
      const last = this.#chunks[this.#chunks.length - 1]!;
      if (last.length <= n) {
        this.#chunks.pop();
        n -= last.length;
      } else {
        this.#chunks[this.#chunks.length - 1] = last.subarray(0, last.length - n);
        n = 0;
      }
    }
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The message as read, every line end CRLF (the HTTP injection's toCrlf), ending with CRLF. */
  message(): Buffer {
    return toCrlf(Buffer.concat(this.#chunks));
  }
}

/** One header field: its name (as written) and all its lines, CRLFs included (latin1: bytes kept). */
interface Field {
  name: string;
  text: string;
}

/**
 * The header fields and the body of a CRLF message. The header ends at the first empty line,
 * or at the first line that is neither a field nor a folded continuation (then that line
 * starts the body, as sendmail reads a message typed without headers).
 */
function splitHeader(msg: Buffer): { fields: Field[]; body: Buffer } {
  const text = msg.toString('latin1');
  const fields: Field[] = [];
  let pos = 0;
  while (pos < text.length) {
    const eol = text.indexOf('\r\n', pos);
    const line = text.slice(pos, eol < 0 ? text.length : eol + 2);
    if (line === '\r\n') return { fields, body: msg.subarray(pos + 2) };
    if (/^[ \t]/.test(line) && fields.length > 0) {
      fields[fields.length - 1]!.text += line;
    } else {
      const m = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/.exec(line);
      if (m === null) break;
      fields.push({ name: m[1]!, text: line });
    }
    pos += line.length;
  }
  return { fields, body: msg.subarray(pos) };
}

export interface PrepareOptions {
  /** -t */
  extract: boolean;
  /** The envelope sender ('' = null). */
  sender: string;
  fullName?: string;
  /** For the Message-ID's right side and the domain of bare recipients. */
  hostname: string;
  now?: Date;
}

export interface Prepared {
  message: Buffer;
  /** The addresses -t found in To, Cc and Bcc (with the domain added to bare names). */
  headerRecipients: string[];
}

/** A bare local name (root, www-data) is a user of this host, as sendmail qualifies it. */
export function qualify(address: string, hostname: string): string {
  return address.includes('@') ? address : `${address}@${hostname}`;
}

/**
 * The addresses of address-list text (groups flattened), in UTF-8. A bare word (root) is an
 * address, as sendmail reads it, not a display name without one.
 */
export function addressesOf(list: string): string[] {
  return addressparser(list, { flatten: true })
    .map((a) => a.address || (/^[^\s"<>()@,;:]+$/.test(a.name) ? a.name : ''))
    .filter((a) => a !== '');
}

/**
 * The addresses of one recipient argument: a comma-separated list of addresses, each bare or
 * in angle brackets. Not read as header text: an argument is taken as written or refused
 * (isSubmittable), never quietly cleaned into another address.
 */
export function argumentAddresses(arg: string): string[] {
  // Commas inside a quoted display name ("Doe, J" <j@x>) do not split.
  return (arg.match(/(?:"(?:[^"\\]|\\.)*"|[^,"])+/g) ?? [])
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part) => /^[^<>]*<([^<>]*)>$/.exec(part)?.[1]?.trim() ?? part);
}

/** What may go between the angle brackets of MAIL FROM and RCPT TO: no space, bracket or control (no command injection). */
export function isSubmittable(address: string): boolean {
  // eslint-disable-next-line no-control-regex
  return address.length <= 254 && /^[^\s<>\x00-\x1f\x7f]+$/.test(address);
}

/** RFC 5322 §3.3 date-time in the local zone: "Mon, 7 Dec 2026 05:03:43 +0000". */
export function rfc5322Date(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const off = -d.getTimezoneOffset();
  const p2 = (n: number): string => String(n).padStart(2, '0');
  const zone = `${off >= 0 ? '+' : '-'}${p2(Math.floor(Math.abs(off) / 60))}${p2(Math.abs(off) % 60)}`;
  return `${days[d.getDay()]}, ${d.getDate()} ${months[d.getMonth()]} ${d.getFullYear()} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${zone}`;
}

/** A display name as a quoted string, or an RFC 2047 encoded word when it is not ASCII. */
function displayName(name: string): string {
  if (/[^\x20-\x7e]/.test(name)) return `=?UTF-8?B?${Buffer.from(name, 'utf8').toString('base64')}?=`;
  return `"${name.replace(/(["\\])/g, '\\$1')}"`;
}

export function prepareMessage(msg: Buffer, o: PrepareOptions): Prepared {
  const { fields, body } = splitHeader(msg);
  const has = (name: string): boolean => fields.some((f) => f.name.toLowerCase() === name);
  const headerRecipients: string[] = [];
  if (o.extract) {
    for (const f of fields) {
      const n = f.name.toLowerCase();
      if (n !== 'to' && n !== 'cc' && n !== 'bcc') continue;
      const value = Buffer.from(f.text.slice(f.text.indexOf(':') + 1), 'latin1').toString('utf8').replace(/\r\n/g, '');
      for (const a of addressesOf(value)) headerRecipients.push(qualify(a, o.hostname));
    }
  }
  // Bcc never leaves with the message (sendmail removes it with -t and without).
  const kept = fields.filter((f) => f.name.toLowerCase() !== 'bcc');
  const added: string[] = [];
  if (!has('from')) added.push(`From: ${o.fullName ? displayName(o.fullName) + ' ' : ''}<${o.sender === '' ? `MAILER-DAEMON@${o.hostname}` : o.sender}>\r\n`);
  const now = o.now ?? new Date();
  if (!has('date')) added.push(`Date: ${rfc5322Date(now)}\r\n`);
  if (!has('message-id')) added.push(`Message-ID: <${now.getTime().toString(36)}.${randomBytes(8).toString('hex')}@${o.hostname}>\r\n`);
  // Kept fields go back byte for byte (read as latin1); added ones are UTF-8 (an SMTPUTF8 sender).
  const head = [Buffer.from(kept.map((f) => f.text).join(''), 'latin1'), Buffer.from(added.join('') + '\r\n', 'utf8')];
  return { message: Buffer.concat([...head, body]), headerRecipients };
}
