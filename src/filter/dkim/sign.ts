// A DKIM signer (RFC 6376, relaxed/relaxed; RFC 8463 for Ed25519) over node:crypto, for the
// filter workers: synchronous, no streams, the key already parsed. It never throws on odd
// input: signMessage() returns null when the message cannot be signed sensibly (malformed
// header lines, no or several From fields, no usable From address, a From the sender may not
// use, a body whose last line has no line break).
// Messages are handled as latin1 strings, which map byte for byte, so 8-bit and UTF-8 header
// bytes are hashed exactly as they are on the wire.
import { createHash, sign } from 'node:crypto';
import type { DkimKey } from './keys.js';
import { toAsciiDomain } from '../../lib/domain-name.js';

/**
 * Header fields signed when present (each instance, bottom-up). From is also oversigned: one
 * extra `from` in h= makes adding a second From field after signing break the signature.
 */
export const SIGNED_HEADERS: readonly string[] = [
  'from', 'sender', 'reply-to', 'subject', 'date', 'message-id', 'to', 'cc',
  'in-reply-to', 'references', 'mime-version', 'content-type', 'content-transfer-encoding',
  'content-id', 'content-description', 'content-language',
  'list-id', 'list-help', 'list-unsubscribe', 'list-unsubscribe-post', 'list-subscribe', 'list-post', 'list-owner', 'list-archive',
  'feedback-id', 'autocrypt', 'openpgp',
];

export interface HeaderField {
  /** Name as written (case kept). */
  name: string;
  /** The whole field as on the wire, latin1, without its final CRLF (folds kept). */
  raw: string;
}

export interface SplitMessage {
  headers: HeaderField[];
  /** Offset of the body (after the empty line) in the message; message length when none. */
  bodyOffset: number;
}

/** Splits the header section into fields; null when a line is neither a field nor a fold. */
export function parseHeaderSection(message: Buffer): SplitMessage | null {
  // The header section ends at the first empty line; a message without one is all header.
  let end = message.indexOf('\r\n\r\n');
  let bodyOffset: number;
  if (end >= 0) bodyOffset = end + 4;
  else if (message.length >= 2 && message[0] === 0x0d && message[1] === 0x0a) {
    end = 0; // no header at all
    bodyOffset = 2;
  } else {
    end = message.length;
    bodyOffset = message.length;
  }
  let text = message.toString('latin1', 0, end);
  if (text.endsWith('\r\n')) text = text.slice(0, -2); // all header, ending in CRLF
  const headers: HeaderField[] = [];
  if (text === '') return { headers, bodyOffset };
  for (const line of text.split('\r\n')) {
    if (line.length > 0 && (line[0] === ' ' || line[0] === '\t')) {
      const last = headers[headers.length - 1];
      if (!last) return null; // a fold with nothing to continue
      last.raw += '\r\n' + line;
      continue;
    }
    const colon = line.indexOf(':');
    // RFC 5322 field names: printable ASCII but colon; WSP before the colon tolerated (obs).
    if (colon <= 0 || !/^[!-9;-~]+[ \t]*$/.test(line.slice(0, colon))) return null;
    headers.push({ name: line.slice(0, colon).trimEnd(), raw: line });
  }
  return { headers, bodyOffset };
}

/** RFC 6376 §3.4.2 relaxed header canonicalization of one field (CRLF-terminated). */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(':');
  const name = raw.slice(0, colon).replace(/[ \t]+$/, '').toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .replace(/^ | $/g, '');
  return `${name}:${value}\r\n`;
}

/** RFC 6376 §3.4.4 relaxed body canonicalization (lines end in CRLF; a bare LF counts as one). */
export function relaxedBody(body: Buffer): Buffer {
  if (body.length === 0) return body;
  // The regexes touch only what changes (runs of 2+ WSP, tabs, WSP before a line end, bare
  // LFs): replacing every single space with itself costs 3-4x more on ordinary text.
  const s = body
    .toString('latin1')
    .replace(/(?<!\r)\n/g, '\r\n')
    .replace(/[ \t]{2,}|\t/g, ' ')
    .replace(/ (?=\r\n|$)/g, '')
    .replace(/(?:\r\n)+$/, '');
  return s === '' ? Buffer.alloc(0) : Buffer.from(s + '\r\n', 'latin1');
}

/**
 * The domain of the single address in a From field value, lower-case ASCII; null when the
 * field holds no address, several, or an unparseable one.
 */
export function fromDomain(rawField: string): string | null {
  return fromAddress(rawField)?.domain ?? null;
}

/**
 * The single address of a From field value: its local part (UTF-8 decoded; a quoted local
 * part comes back as `""`, which matches no address) and its domain in lower-case ASCII.
 */
export function fromAddress(rawField: string): { local: string; domain: string } | null {
  let v = rawField.slice(rawField.indexOf(':') + 1).replace(/\r\n/g, '');
  // Drop quoted strings (display names, quoted local parts) and comments before looking.
  v = v.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  for (let prev = ''; prev !== v; ) {
    prev = v;
    v = v.replace(/\((?:[^()\\]|\\.)*\)/g, ' ');
  }
  const angle = [...v.matchAll(/<([^<>]*)>/g)].map((m) => m[1]!);
  let addrs: string[];
  if (angle.length > 0) addrs = angle;
  else addrs = v.split(',').map((a) => a.trim()).filter((a) => a !== '');
  if (addrs.length !== 1) return null;
  const addr = addrs[0]!.trim();
  const at = addr.lastIndexOf('@');
  if (at <= 0) return null;
  // A source route (<@a,@b:user@d>) is obsolete syntax; its last part is the address.
  const domain = addr.slice(at + 1).trim();
  if (domain.startsWith('[')) return null; // address literal: no DNS name to sign for
  const utf8 = Buffer.from(domain, 'latin1').toString('utf8'); // SMTPUTF8 (RFC 6532) domains
  const ascii = toAsciiDomain(utf8);
  if (ascii === null) return null;
  let local = addr.slice(0, at).trim();
  const colon = local.lastIndexOf(':');
  if (local.startsWith('@') && colon >= 0) local = local.slice(colon + 1);
  return { local: Buffer.from(local, 'latin1').toString('utf8'), domain: ascii };
}

/** The key for a domain: an exact match, else the nearest parent domain with a key. */
export function keyFor(keys: ReadonlyMap<string, DkimKey>, domain: string): DkimKey | undefined {
  for (let d = domain; ; ) {
    const k = keys.get(d);
    if (k) return k;
    const dot = d.indexOf('.');
    if (dot < 0) return undefined;
    d = d.slice(dot + 1);
  }
}

/** Folds `tag=value` items into header lines of at most ~78 characters (CRLF SP between). */
function fold(first: string, items: string[]): string {
  let out = first;
  let lineLen = first.length;
  for (const item of items) {
    const piece = ' ' + item;
    const firstLine = piece.indexOf('\r\n') < 0 ? piece.length : piece.indexOf('\r\n');
    if (lineLen + firstLine > 76) out += '\r\n';
    out += piece;
    const lastCrlf = out.lastIndexOf('\r\n');
    lineLen = lastCrlf < 0 ? out.length : out.length - lastCrlf - 2;
  }
  return out;
}

/** Splits a long value into pieces at `sep` boundaries (or every `width` chars) joined by CRLF SP. */
function wrapValue(value: string, width: number, sep?: string): string {
  if (value.length <= width) return value;
  const parts: string[] = [];
  if (sep) {
    let cur = '';
    for (const tok of value.split(sep)) {
      const next = cur === '' ? tok : cur + sep + tok;
      if (next.length > width && cur !== '') {
        parts.push(cur + sep);
        cur = tok;
      } else cur = next;
    }
    parts.push(cur);
  } else {
    for (let i = 0; i < value.length; i += width) parts.push(value.slice(i, i + width));
  }
  return parts.join('\r\n ');
}

export interface SignOptions {
  /** Signature time (t=), seconds since the epoch; default now. */
  time?: number;
  /** Fields to sign (lower-case); default SIGNED_HEADERS. */
  headerNames?: readonly string[];
  /** When given, sign only if it allows the From address ("local@domain"). */
  fromAllowed?: (address: string) => boolean;
}

/**
 * Signs with `key` (d= is key.domain). Returns the DKIM-Signature field, folded and
 * CRLF-terminated, to prepend to the message.
 */
export function signWithKey(message: Buffer, split: SplitMessage, key: DkimKey, o: SignOptions = {}): string {
  const wanted = o.headerNames ?? SIGNED_HEADERS;
  const byName = new Map<string, HeaderField[]>();
  for (const h of split.headers) {
    const n = h.name.toLowerCase();
    if (!wanted.includes(n)) continue;
    let list = byName.get(n);
    if (!list) byName.set(n, (list = []));
    list.push(h);
  }
  // h= lists every instance, bottom-up (RFC 6376 §5.4.2), plus one more `from` (oversigning).
  const hNames: string[] = [];
  let canonHeaders = '';
  for (const n of wanted) {
    const list = byName.get(n) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      hNames.push(n);
      canonHeaders += relaxedHeader(list[i]!.raw);
    }
    if (n === 'from') hNames.push('from');
  }
  const bh = createHash('sha256').update(relaxedBody(message.subarray(split.bodyOffset))).digest('base64');
  const t = o.time ?? Math.floor(Date.now() / 1000);
  const items = [
    'v=1;',
    `a=${key.algorithm};`,
    'c=relaxed/relaxed;',
    `d=${key.domain};`,
    `s=${key.selector};`,
    `t=${t};`,
    `h=${wrapValue(hNames.join(':'), 68, ':')};`,
    `bh=${bh};`,
    'b=',
  ];
  const unsigned = fold('DKIM-Signature:', items);
  // The signature covers the signed fields then this field with an empty b=, no final CRLF.
  const data = Buffer.from(canonHeaders + relaxedHeader(unsigned).slice(0, -2), 'latin1');
  const b =
    key.algorithm === 'ed25519-sha256'
      ? sign(null, createHash('sha256').update(data).digest(), key.key) // RFC 8463 §3: Ed25519 over the SHA-256 hash
      : sign('sha256', data, key.key); // RSASSA-PKCS1-v1_5
  return `${unsigned}\r\n ${wrapValue(b.toString('base64'), 72)}\r\n`;
}

/**
 * Finds the RFC5322.From domain and its key, and signs. null (no signature) when the
 * message has no single parseable From, or no key covers its domain.
 */
export function signMessage(message: Buffer, keys: ReadonlyMap<string, DkimKey>, o: SignOptions = {}): { header: string; key: DkimKey } | null {
  const split = parseHeaderSection(message);
  if (!split) return null;
  const froms = split.headers.filter((h) => h.name.toLowerCase() === 'from');
  if (froms.length !== 1) return null;
  const from = fromAddress(froms[0]!.raw);
  if (!from) return null;
  const domain = from.domain;
  if (o.fromAllowed !== undefined && !o.fromAllowed(`${from.local}@${domain}`)) return null;
  const key = keyFor(keys, domain);
  if (!key) return null;
  // A body whose last line has no line break (possible with BDAT, never with DATA) is
  // canonicalized differently by different verifiers (trailing WSP kept or not, a lone CR):
  // not signed rather than signed for some verifiers only.
  if (split.bodyOffset < message.length && message[message.length - 1] !== 0x0a) return null;
  return { header: signWithKey(message, split, key, o), key };
}
