// Message extraction for the spam classifier: raw bytes in, decoded text out. Never trusts
// the bytes to be UTF-8 and never throws: headers are read as latin1 (one char per byte),
// unfolded and RFC 2047-decoded; the MIME tree is walked (multipart, message/rfc822),
// base64 / quoted-printable undone, text decoded with TextDecoder in the declared charset
// (latin1 when the label is unknown), HTML reduced to text with its link hosts kept.
// Limits keep the work per message bounded: MAX_DEPTH nested parts, MAX_PARTS parts,
// MAX_TEXT characters of text per part.

export interface PartInfo {
  type: string; // lower-case "type/subtype"
  charset: string; // lower-case, '' when none
  encoding: string; // lower-case Content-Transfer-Encoding, '' when none
  filename: string; // decoded, '' when none
  bytes: number; // encoded size
}

export interface Extracted {
  /** Top-level headers in order: lower-case name, unfolded and RFC 2047-decoded value. */
  headers: Array<[string, string]>;
  /** Text of text/plain parts (and of parts without a Content-Type). */
  text: string[];
  /** Text of text/html parts, tags stripped. */
  html: string[];
  /** Hosts of links found in HTML (href/src) and in plain text (http://, www.). Lower-case. */
  hosts: string[];
  /** Every leaf part, in walk order. */
  parts: PartInfo[];
  /** <img> tags in HTML parts plus image/* parts. */
  images: number;
  /** Whether the message had an mbox "From " line (it is skipped). */
  mboxLine: boolean;
}

import { TextDecoder } from 'node:util';

const MAX_DEPTH = 8;
const MAX_PARTS = 64;
const MAX_TEXT = 256 * 1024;

// ---- charset decoding -----------------------------------------------------------------

const decoders = new Map<string, TextDecoder | null>();
const ALIASES: Record<string, string> = {
  'ks_c_5601-1987': 'euc-kr',
  'x-euc-tw': 'big5',
  'x-unknown': 'latin1',
  'unknown-8bit': 'latin1',
  'x-user-defined': 'latin1',
  'default': 'latin1',
  'ascii': 'latin1',
  'us-ascii': 'latin1',
};

function decoderFor(charset: string): TextDecoder | null {
  const cs = charset.toLowerCase().trim().replace(/^["']|["']$/g, '');
  let d = decoders.get(cs);
  if (d !== undefined) return d;
  const label = ALIASES[cs] ?? cs;
  d = null;
  if (label !== 'latin1' && label !== 'iso-8859-1' && label !== '') {
    try {
      d = new TextDecoder(label, { fatal: false });
    } catch {
      d = null;
    }
  }
  if (decoders.size < 256) decoders.set(cs, d);
  return d;
}

/** Bytes to text in `charset`; latin1 when the charset is unknown or missing. */
export function decodeBytes(bytes: Uint8Array, charset: string): string {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (charset) {
    const d = decoderFor(charset);
    if (d) {
      try {
        return d.decode(buf);
      } catch {
        /* fall through */
      }
    }
  } else if (!isAscii(buf)) {
    // no declared charset: UTF-8 when it decodes cleanly, else latin1
    const s = buf.toString('utf8');
    if (!s.includes('\ufffd')) return s;
  }
  return buf.toString('latin1');
}

// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

function isAscii(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! > 0x7f) return false;
  return true;
}

/** A latin1 string (one char per byte) back to bytes. */
const bin = (s: string): Buffer => Buffer.from(s, 'latin1');

// ---- transfer encodings ---------------------------------------------------------------

// one pass, left to right: "=XX" is a byte; "=" CRLF, and "=" with optional blanks before LF or
// the end, are soft line breaks; any other "=" stays as it is (so do bad escapes); in a header
// (RFC 2047 "Q") "_" is a space. One native regex scan instead of a JS loop per character.
const QP = /=(?:([0-9A-Fa-f]{2})|\r\n|[ \t]*(?:\n|$))/g;
const QP_HEADER = /=(?:([0-9A-Fa-f]{2})|\r\n|[ \t]*(?:\n|$))|_/g;
const qpByte = (m: string, hex: string | undefined): string => (hex !== undefined ? String.fromCharCode(parseInt(hex, 16)) : m === '_' ? ' ' : '');

/** Quoted-printable (a latin1 string) to bytes; tolerant of bad escapes (kept as is). */
export function decodeQP(s: string, header = false): Buffer {
  return Buffer.from(s.indexOf('=') < 0 && !header ? s : s.replace(header ? QP_HEADER : QP, qpByte), 'latin1');
}

/**
 * Whether Buffer.from(s, 'base64') decodes s as the lenient RFC 2045 reading does (drop every
 * character outside the alphabet, then decode): it skips white space and junk the same way, but
 * stops at the first "=" and takes "-" and "_" as base64url. So: no "-" or "_", and after the
 * first "=" only more "=" and characters outside the alphabet. Linear, no copy.
 */
function plainBase64(s: string): boolean {
  if (s.indexOf('-') >= 0 || s.indexOf('_') >= 0) return false;
  let i = s.indexOf('=');
  if (i < 0) return true;
  while (s.charCodeAt(i) === 0x3d) i++;
  BASE64_CHAR.lastIndex = i;
  return !BASE64_CHAR.test(s);
}
const BASE64_CHAR = /[A-Za-z0-9+/=]/g;

function decodeTransfer(body: string, encoding: string): Buffer {
  if (encoding === 'base64') return Buffer.from(plainBase64(body) ? body : body.replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
  if (encoding === 'quoted-printable') return decodeQP(body);
  return bin(body);
}

// ---- headers ----------------------------------------------------------------------------

const ENCODED_WORD = /=\?([^?\s]{1,40})\?([bBqQ])\?([^?\s]*)\?=/g;

/** RFC 2047: decode encoded words in a (latin1) header value; whitespace between them goes. */
export function decodeWords(v: string): string {
  if (!v.includes('=?')) return v;
  return v
    .replace(/(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?)/g, '$1')
    .replace(ENCODED_WORD, (_m, cs: string, enc: string, data: string) => {
      const bytes = enc === 'b' || enc === 'B' ? Buffer.from(data, 'base64') : decodeQP(data, true);
      return decodeBytes(bytes, cs.replace(/\*.*$/, '')); // RFC 2231 language suffix
    });
}

/**
 * Header block (latin1 text) to [lower-case name, raw unfolded value] pairs. Lines that
 * are neither a header nor a continuation are skipped.
 */
export function parseHeaderBlock(block: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const lines = block.split('\n');
  for (let line of lines) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') continue;
    const c = line.charCodeAt(0);
    if ((c === 0x20 || c === 0x09) && out.length) {
      const last = out[out.length - 1]!;
      if (last[1].length < 16384) last[1] += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0 || colon > 76) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!name || /\s/.test(name)) continue;
    out.push([name, line.slice(colon + 1).trim()]);
  }
  return out;
}

/** Split at the first empty line; returns [headerBlock, body] (latin1 strings). */
function splitHeaderBody(s: string): [string, string] {
  if (s.startsWith('\n') || s.startsWith('\r\n')) return ['', s.slice(s.indexOf('\n') + 1)];
  const m = /\r?\n\r?\n/.exec(s);
  if (!m) return [s, ''];
  return [s.slice(0, m.index), s.slice(m.index + m[0].length)];
}

interface ContentType {
  type: string;
  params: Map<string, string>;
}

/** "text/plain; charset=x; boundary="y"" (lower-case type and param names). */
export function parseContentType(v: string | undefined): ContentType {
  const params = new Map<string, string>();
  if (!v) return { type: '', params };
  const semi = v.indexOf(';');
  const type = (semi < 0 ? v : v.slice(0, semi)).trim().toLowerCase().replace(/\s+/g, '');
  if (semi >= 0) {
    const re = /;\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/g;
    let m: RegExpExecArray | null;
    const rest = v.slice(semi);
    while ((m = re.exec(rest)) !== null) {
      let name = m[1]!.toLowerCase();
      let value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
      // RFC 2231 (name*=charset''value, name*0=...): keep it simple
      if (name.endsWith('*')) {
        name = name.slice(0, -1);
        const q = value.indexOf("''");
        if (q >= 0) value = decodeBytes(bin(decodeURIComponentSafe(value.slice(q + 2))), value.slice(0, q));
      }
      name = name.replace(/\*\d+\*?$/, '');
      params.set(name, (params.get(name) ?? '') + value);
    }
  }
  return { type, params };
}

function decodeURIComponentSafe(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

// ---- HTML -----------------------------------------------------------------------------------

const ENTITIES: Record<string, string> = {
  nbsp: ' ', amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", copy: '©', reg: '®',
  trade: '™', euro: '€', pound: '£', yen: '¥', cent: '¢', middot: '·', bull: '•', hellip: '…',
  mdash: '—', ndash: '–', laquo: '«', raquo: '»', rsquo: '’', lsquo: '‘', rdquo: '”', ldquo: '“',
};

export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#[xX][0-9a-fA-F]{1,6}|#\d{1,7}|[a-zA-Z]{2,8});?/g, (m, e: string) => {
    if (e.charCodeAt(0) === 0x23) {
      const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return n > 0 && n < 0x110000 && !(n >= 0xd800 && n < 0xe000) ? String.fromCodePoint(n) : ' ';
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

const URL_HOST = /(?:https?:\/\/|www\.)([a-z0-9][a-z0-9.-]{0,250}[a-z0-9])/gi;
const ATTR_URL = /(?:href|src|action)\s*=\s*["']?\s*(?:[a-z]+:\/\/|\/\/)([^\s"'<>/?#:@]*@)?([a-z0-9.-]{1,253})/gi;

/** Hosts of http(s):// and www. links in text. */
export function textHosts(s: string, into: string[]): void {
  URL_HOST.lastIndex = 0;
  let m: RegExpExecArray | null;
  let n = 0;
  while ((m = URL_HOST.exec(s)) !== null && n++ < 200) {
    const h = m[1]!.toLowerCase();
    into.push(m[0].charCodeAt(0) === 0x77 || m[0].charCodeAt(0) === 0x57 ? 'www.' + h : h);
  }
}

/** HTML to text: drops comments, script/style/head content and tags; collects link hosts and <img> count. */
export function htmlToText(html: string, hosts: string[]): { text: string; images: number } {
  let n = 0;
  ATTR_URL.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = ATTR_URL.exec(html)) !== null && n++ < 200) hosts.push(m[2]!.toLowerCase().replace(/\.$/, ''));
  const images = (html.match(/<img\b/gi) ?? []).length;
  const text = html
    .replace(/<!--[\s\S]*?-->/g, ' ')
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, ' ')
    .replace(/<[^>]{0,2000}>/g, ' ');
  return { text: decodeEntities(text), images };
}

// ---- the walk -------------------------------------------------------------------------------

function headerMap(h: Array<[string, string]>): Map<string, string> {
  const m = new Map<string, string>();
  for (const [k, v] of h) if (!m.has(k)) m.set(k, v);
  return m;
}

function walk(raw: string, hs: Array<[string, string]>, body: string, out: Extracted, depth: number): void {
  if (out.parts.length >= MAX_PARTS) return;
  const h = headerMap(hs);
  const ct = parseContentType(h.get('content-type'));
  const type = ct.type || 'text/plain';
  const encoding = (h.get('content-transfer-encoding') ?? '').trim().toLowerCase();
  if (type.startsWith('multipart/') && depth < MAX_DEPTH) {
    const boundary = ct.params.get('boundary');
    if (boundary) {
      const sub = splitMultipart(body, boundary);
      if (sub.length) {
        for (const p of sub) {
          const [hb, b] = splitHeaderBody(p);
          walk(p, parseHeaderBlock(hb), b, out, depth + 1);
        }
        return;
      }
    }
    // no boundary or no parts found: treat as text below
  }
  if (type === 'message/rfc822' && depth < MAX_DEPTH) {
    const inner = encoding === 'base64' || encoding === 'quoted-printable' ? decodeTransfer(body, encoding).toString('latin1') : body;
    const [hb, b] = splitHeaderBody(inner);
    const ih = parseHeaderBlock(hb);
    // the inner message's subject and sender are text too
    for (const [k, v] of ih) if (k === 'subject' || k === 'from') out.text.push(decodeWords(v));
    walk(inner, ih, b, out, depth + 1);
    return;
  }
  const charset = (ct.params.get('charset') ?? '').toLowerCase();
  const disp = parseContentType(h.get('content-disposition'));
  const filename = decodeWords(disp.params.get('filename') ?? ct.params.get('name') ?? '');
  out.parts.push({ type, charset, encoding, filename, bytes: body.length });
  void raw;
  if (type.startsWith('image/')) { out.images++; return; }
  const isText = type.startsWith('text/') || type === 'multipart/alternative' || type === 'multipart/mixed' || type === 'multipart/related' || type === '';
  if (!isText || (disp.type === 'attachment' && !type.startsWith('text/'))) return;
  let text: string;
  const head = body.length > MAX_TEXT ? body.slice(0, MAX_TEXT) : body;
  if (encoding !== 'base64' && encoding !== 'quoted-printable' && (charset ? decoderFor(charset) === null : !NON_ASCII.test(head))) {
    // the bytes are the text already (latin1, or ASCII without a charset): no round trip
    text = head;
  } else {
    const bytes = decodeTransfer(body.length > MAX_TEXT * 2 ? body.slice(0, MAX_TEXT * 2) : body, encoding);
    text = decodeBytes(bytes.length > MAX_TEXT ? bytes.subarray(0, MAX_TEXT) : bytes, charset);
  }
  if (type === 'text/html' || (type !== 'text/plain' && /<(html|body|p|div|font|table|a)\b/i.test(text.slice(0, 4096)))) {
    const r = htmlToText(text, out.hosts);
    out.images += r.images;
    out.html.push(r.text);
    textHosts(r.text, out.hosts);
  } else {
    if (text.length > MAX_TEXT) text = text.slice(0, MAX_TEXT);
    out.text.push(text);
    textHosts(text, out.hosts);
  }
}

/** Bodies between "--boundary" lines (preamble and epilogue dropped). */
function splitMultipart(body: string, boundary: string): string[] {
  const delim = '--' + boundary;
  const parts: string[] = [];
  let pos = findDelim(body, delim, 0);
  if (pos < 0) return parts;
  while (pos >= 0 && parts.length < MAX_PARTS) {
    let lineEnd = body.indexOf('\n', pos);
    const closing = body.startsWith('--', pos + delim.length);
    if (closing) break;
    if (lineEnd < 0) break;
    lineEnd++;
    const next = findDelim(body, delim, lineEnd);
    let end = next < 0 ? body.length : next;
    // the newline before the delimiter belongs to it
    if (end > lineEnd && body.charCodeAt(end - 1) === 0x0a) end--;
    if (end > lineEnd && body.charCodeAt(end - 1) === 0x0d) end--;
    parts.push(body.slice(lineEnd, Math.max(lineEnd, end)));
    pos = next;
  }
  return parts;
}

/**
 * Index of the delimiter line at or after `from`: "--boundary" at the start of a line and
 * followed by the line end, white space (transport padding) or "--" (the close delimiter),
 * so an inner boundary that merely starts with the outer one ("…dG" / "…dGAA") is not taken
 * for it (RFC 2046 §5.1.1).
 */
function findDelim(body: string, delim: string, from: number): number {
  let i = from;
  for (;;) {
    i = body.indexOf(delim, i);
    if (i < 0) return -1;
    if (i === 0 || body.charCodeAt(i - 1) === 0x0a) {
      const after = i + delim.length;
      const c = body.charCodeAt(after); // NaN at the end
      if (after >= body.length || c === 0x0d || c === 0x0a || c === 0x20 || c === 0x09 || body.startsWith('--', after)) return i;
    }
    i += delim.length;
  }
}

/** Extract headers, text, HTML text, link hosts and part structure from raw message bytes. */
export function extract(buf: Uint8Array): Extracted {
  const out: Extracted = { headers: [], text: [], html: [], hosts: [], parts: [], images: 0, mboxLine: false };
  try {
    const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    let s = b.toString('latin1');
    if (s.startsWith('From ')) {
      out.mboxLine = true;
      const nl = s.indexOf('\n');
      s = nl < 0 ? '' : s.slice(nl + 1);
    }
    const [hb, body] = splitHeaderBody(s);
    const hs = parseHeaderBlock(hb);
    out.headers = hs.map(([k, v]) => [k, decodeWords(v)]);
    walk(s, hs, body, out, 0);
  } catch {
    // garbage in: keep whatever was collected
  }
  return out;
}
