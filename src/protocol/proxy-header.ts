// The PROXY protocol header (HAProxy's doc/proxy-protocol.txt, versions 1 and 2) that a load
// balancer sends before the client's bytes to say whose connection it relays. No I/O: the
// parser reads a prefix of the stream and says whether it is a whole valid header (and where
// the client's own bytes begin), not yet complete, or invalid. Every byte is checked before any
// of it is used (§2.1 "any sequence which does not exactly match the protocol must be
// discarded"), and a header never needs more than MAX_PROXY_HEADER_BYTES of the stream.
import { isIPv6 } from 'node:net';
import { crc32c } from '../lib/crc32c.js';
import { ipv4Number, ipv6Text, ipv6Words } from '../lib/networks.js';

/** §2.1: the longest v1 line, CRLF included ("PROXY UNKNOWN" with two IPv6 addresses and ports). */
export const MAX_V1_BYTES = 107;
/**
 * The longest v2 header accepted (16 bytes + address block + TLVs). The format allows 16 +
 * 65535; HAProxy's addresses with its usual TLVs (unique id, SSL version, cipher, SNI) take a
 * few hundred bytes, and a client certificate (PP2_SUBTYPE_SSL_CLIENT_CERT) a kilobyte or two.
 */
export const MAX_V2_BYTES = 4096;
export const MAX_PROXY_HEADER_BYTES = MAX_V2_BYTES;

/** The 12-byte signature that opens a v2 header (§2.2). */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

const PP2_TYPE_CRC32C = 0x03;

/** The client's connection as the proxy saw it. Addresses in node:net's text form. */
export interface ProxyAddresses {
  family: 4 | 6;
  source: string;
  sourcePort: number;
  destination: string;
  destinationPort: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /**
   * null: the connection's own endpoints stand, as the spec asks for v1 UNKNOWN, v2 LOCAL (the
   * proxy's health checks) and v2 families a receiver may fall back from (AF_UNSPEC, AF_UNIX,
   * UDP). `unspecified` then says which.
   */
  addresses: ProxyAddresses | null;
  unspecified?: 'unknown' | 'local' | 'unspec' | 'unix' | 'dgram';
}

/**
 * 'header': a complete valid header, `end` bytes long: the client's bytes begin there.
 * 'partial': every byte so far fits a header, more are needed (never past the size bound).
 * 'invalid': not a header, or a broken one; `reason` says what was wrong (for the log).
 */
export type ProxyHeaderResult =
  | { kind: 'header'; header: ProxyHeader; end: number }
  | { kind: 'partial' }
  | { kind: 'invalid'; reason: string };

const PARTIAL: ProxyHeaderResult = { kind: 'partial' };

function invalid(reason: string): ProxyHeaderResult {
  return { kind: 'invalid', reason };
}

/** Parse the header at the start of `buf` (the first bytes the connection received). */
export function parseProxyHeader(buf: Uint8Array): ProxyHeaderResult {
  if (buf.length === 0) return PARTIAL;
  if (buf[0] === V2_SIGNATURE[0]) return parseV2(buf);
  if (buf[0] === V1_PREFIX[0]) return parseV1(buf);
  return invalid('no PROXY protocol header');
}

/** True when the first min(n, sig.length) bytes of buf are those of sig. */
function prefixMatches(buf: Uint8Array, sig: Uint8Array): boolean {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

// ── Version 1: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n" ──────────────────────────────

function parseV1(buf: Uint8Array): ProxyHeaderResult {
  if (!prefixMatches(buf, V1_PREFIX)) return invalid('v1: does not begin with "PROXY "');
  const limit = Math.min(buf.length, MAX_V1_BYTES);
  let lf = -1;
  for (let i = 0; i < limit; i++) {
    const c = buf[i]!;
    if (c === 0x0a) {
      lf = i;
      break;
    }
    // Printable US-ASCII only, and a CR only as the CRLF's: checked as the bytes come, so a
    // stream that cannot become a header is refused without waiting for 107 bytes.
    if (c === 0x0d) {
      if (i + 1 < buf.length && buf[i + 1] !== 0x0a) return invalid('v1: CR without LF');
    } else if (c < 0x20 || c > 0x7e) {
      return invalid('v1: a byte that is not printable US-ASCII');
    }
  }
  if (lf < 0) return buf.length >= MAX_V1_BYTES ? invalid(`v1: no CRLF in the first ${MAX_V1_BYTES} bytes`) : PARTIAL;
  if (lf === 0 || buf[lf - 1] !== 0x0d) return invalid('v1: line ends with a bare LF');
  const fields = Buffer.from(buf.buffer, buf.byteOffset + V1_PREFIX.length, lf - 1 - V1_PREFIX.length).toString('latin1').split(' ');
  const end = lf + 1;
  const proto = fields[0];
  // §2.1: with UNKNOWN "the receiver must ignore anything presented before the CRLF".
  if (proto === 'UNKNOWN') return { kind: 'header', header: { version: 1, addresses: null, unspecified: 'unknown' }, end };
  if (proto !== 'TCP4' && proto !== 'TCP6') return invalid(`v1: unknown protocol ${JSON.stringify(proto)}`);
  if (fields.length !== 5) return invalid('v1: expected exactly "PROXY TCPx source destination sport dport"');
  const family = proto === 'TCP4' ? 4 : 6;
  const source = v1Address(fields[1]!, family);
  const destination = v1Address(fields[2]!, family);
  const sourcePort = v1Port(fields[3]!);
  const destinationPort = v1Port(fields[4]!);
  if (source === null || destination === null) return invalid(`v1: an address is not ${proto === 'TCP4' ? 'a dotted-quad IPv4' : 'an IPv6'} address`);
  if (sourcePort < 0 || destinationPort < 0) return invalid('v1: a port is not a decimal 0-65535 without leading zeros');
  return { kind: 'header', header: { version: 1, addresses: { family, source, sourcePort, destination, destinationPort } }, end };
}

/** The address in node's text form, or null when it is not one of `family` in the spec's grammar. */
function v1Address(text: string, family: 4 | 6): string | null {
  if (family === 4) return ipv4Number(text) >= 0 ? text : null;
  // Hex digits, colons, and a dotted IPv4 tail; no zone id (%eth0), no brackets.
  if (text.length < 2 || text.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(text) || !isIPv6(text)) return null;
  if (text.includes('.') && ipv4Number(text.slice(text.lastIndexOf(':') + 1)) < 0) return null;
  const words = ipv6Words(text);
  return words === null ? null : ipv6Text(words);
}

/** A decimal port 0-65535 without leading zeros (§2.1), or -1. */
function v1Port(text: string): number {
  if (!/^(?:0|[1-9][0-9]{0,4})$/.test(text)) return -1;
  const n = Number(text);
  return n <= 65535 ? n : -1;
}

// ── Version 2: 12-byte signature, version/command, family/protocol, length, addresses, TLVs ──

function parseV2(buf: Uint8Array): ProxyHeaderResult {
  if (!prefixMatches(buf, V2_SIGNATURE)) return invalid('v2: bad signature');
  if (buf.length < 13) return PARTIAL;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid(`v2: version ${verCmd >> 4}, only 2 exists`);
  const command = verCmd & 0x0f;
  if (command > 1) return invalid(`v2: unassigned command ${command}`);
  if (buf.length < 14) return PARTIAL;
  const famProto = buf[13]!;
  // §2.2 lists the only valid combinations; anything else "must be rejected as invalid".
  if (famProto !== 0x00 && famProto !== 0x11 && famProto !== 0x12 && famProto !== 0x21 && famProto !== 0x22 && famProto !== 0x31 && famProto !== 0x32) {
    return invalid(`v2: unknown family/protocol byte 0x${famProto.toString(16).padStart(2, '0')}`);
  }
  if (buf.length < 16) return PARTIAL;
  const length = (buf[14]! << 8) | buf[15]!;
  const end = 16 + length;
  if (end > MAX_V2_BYTES) return invalid(`v2: header of ${end} bytes, more than the ${MAX_V2_BYTES} accepted`);
  if (buf.length < end) return PARTIAL;
  // LOCAL: the proxy's own connection (a health check). §2.2: discard the block, "including the
  // family which is ignored"; its length is still honoured.
  if (command === 0) return { kind: 'header', header: { version: 2, addresses: null, unspecified: 'local' }, end };
  const family = famProto >> 4;
  const addressBytes = family === 1 ? 12 : family === 2 ? 36 : family === 3 ? 216 : 0;
  if (length < addressBytes) return invalid(`v2: ${length} bytes of addresses, family 0x${family} needs ${addressBytes}`);
  const tlvs = checkTlvs(buf, 16 + addressBytes, end);
  if (tlvs !== null) return invalid(`v2: ${tlvs}`);
  // AF_UNSPEC, AF_UNIX and UDP: §2.2 lets a receiver fall back to the connection's endpoints.
  if (family === 0) return { kind: 'header', header: { version: 2, addresses: null, unspecified: 'unspec' }, end };
  if (family === 3) return { kind: 'header', header: { version: 2, addresses: null, unspecified: 'unix' }, end };
  if ((famProto & 0x0f) === 2) return { kind: 'header', header: { version: 2, addresses: null, unspecified: 'dgram' }, end };
  const at = 16;
  let addresses: ProxyAddresses;
  if (family === 1) {
    addresses = {
      family: 4,
      source: `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`,
      destination: `${buf[at + 4]}.${buf[at + 5]}.${buf[at + 6]}.${buf[at + 7]}`,
      sourcePort: (buf[at + 8]! << 8) | buf[at + 9]!,
      destinationPort: (buf[at + 10]! << 8) | buf[at + 11]!,
    };
  } else {
    addresses = {
      family: 6,
      source: ipv6Text(words(buf, at)),
      destination: ipv6Text(words(buf, at + 16)),
      sourcePort: (buf[at + 32]! << 8) | buf[at + 33]!,
      destinationPort: (buf[at + 34]! << 8) | buf[at + 35]!,
    };
  }
  return { kind: 'header', header: { version: 2, addresses }, end };
}

function words(buf: Uint8Array, at: number): number[] {
  const out = new Array<number>(8);
  for (let i = 0; i < 8; i++) out[i] = (buf[at + 2 * i]! << 8) | buf[at + 2 * i + 1]!;
  return out;
}

/**
 * Walk the TLVs in buf[from, end): each must fit exactly (type, 2-byte length, value), and a
 * PP2_TYPE_CRC32C must match the header's checksum (§2.2.3: a receiver that checks it must
 * drop a header that fails). Other types are skipped: postern uses none of them. Returns why
 * they are broken, or null.
 */
function checkTlvs(buf: Uint8Array, from: number, end: number): string | null {
  let at = from;
  while (at < end) {
    if (end - at < 3) return `${end - at} bytes left after the last TLV, less than a TLV header`;
    const type = buf[at]!;
    const len = (buf[at + 1]! << 8) | buf[at + 2]!;
    const next = at + 3 + len;
    if (next > end) return `TLV 0x${type.toString(16)} of ${len} bytes runs past the header's end`;
    if (type === PP2_TYPE_CRC32C) {
      if (len !== 4) return `CRC32C TLV of ${len} bytes, not 4`;
      const sent = ((buf[at + 3]! << 24) | (buf[at + 4]! << 16) | (buf[at + 5]! << 8) | buf[at + 6]!) >>> 0;
      const copy = Buffer.from(buf.subarray(0, end));
      copy.fill(0, at + 3, at + 7);
      const computed = crc32c(copy);
      if (computed !== sent) return `CRC32C mismatch (sent ${sent.toString(16)}, computed ${computed.toString(16)})`;
    }
    at = next;
  }
  return null;
}

/**
 * Reads a header that may arrive in pieces: the chunks before it is complete are copied (at
 * most MAX_PROXY_HEADER_BYTES, once per connection); the usual case, the whole header in the
 * first chunk, copies nothing. `end` in a 'header' result is an offset into the chunk just fed.
 */
export class ProxyHeaderReader {
  #held: Buffer | null = null;

  feed(chunk: Buffer): ProxyHeaderResult {
    const held = this.#held;
    if (held === null) {
      const r = parseProxyHeader(chunk);
      if (r.kind === 'partial') this.#held = Buffer.from(chunk);
      return r;
    }
    // A header is never longer than the bound, so nothing past it is worth copying.
    const take = Math.min(chunk.length, MAX_PROXY_HEADER_BYTES - held.length);
    const joined = Buffer.concat([held, chunk.subarray(0, take)]);
    const r = parseProxyHeader(joined);
    if (r.kind === 'partial') {
      this.#held = joined;
      return r;
    }
    this.#held = null;
    if (r.kind === 'header') return { kind: 'header', header: r.header, end: r.end - held.length };
    return r;
  }

  /** Bytes received and held so far (0 before the first chunk, and after a result). */
  get heldBytes(): number {
    return this.#held?.length ?? 0;
  }
}
