// Membership of client addresses in CIDR lists (trusted networks), on node's BlockList, what
// counts as loopback, and the key a client address is counted under for per-client limits:
// IPv4 by address, IPv6 by its prefix (one host usually owns a whole /64). IPv4-mapped IPv6
// addresses (::ffff:a.b.c.d, what a dual-stack listener reports) are matched as IPv4.
import { BlockList, isIP } from 'node:net';

export class NetworkList {
  readonly #list = new BlockList();
  /**
   * The IPv4 networks as (network, mask) pairs of unsigned 32-bit numbers. An IPv4 client (every
   * connection checks) is matched against them with integer arithmetic: BlockList.check makes a
   * SocketAddress per call, a JS object with native memory that lasts until a GC, which made
   * each accepted connection cost about 500 bytes of garbage.
   */
  readonly #v4: number[] = [];
  /**
   * An IPv6 network that overlaps the IPv4-mapped range (::ffff:0:0/96) can match IPv4
   * addresses in BlockList: then IPv4 addresses are checked there too, as before.
   */
  #v4ViaBlockList = false;
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const slash = c.indexOf('/');
      const addr = slash < 0 ? c : c.slice(0, slash);
      const fam = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
      const bits = slash < 0 ? (fam === 'ipv6' ? 128 : 32) : Number(c.slice(slash + 1));
      this.#list.addSubnet(addr, bits, fam);
      if (fam === 'ipv4') {
        const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
        this.#v4.push((ipv4Number(addr) & mask) >>> 0, mask);
      } else if (overlapsIpv4Mapped(addr, bits)) {
        this.#v4ViaBlockList = true;
      }
    }
    this.size = cidrs.length;
  }

  has(address: string | undefined): boolean {
    if (!address) return false;
    const a = normalizeIp(address);
    const n = ipv4Number(a);
    if (n >= 0 && !this.#v4ViaBlockList) {
      const v4 = this.#v4;
      for (let i = 0; i < v4.length; i += 2) if ((n & v4[i + 1]!) >>> 0 === v4[i]) return true;
      return false;
    }
    const fam = isIP(a);
    if (fam === 0) return false;
    return this.#list.check(a, fam === 6 ? 'ipv6' : 'ipv4');
  }
}

/**
 * A dotted-quad IPv4 address as an unsigned 32-bit number, or -1 for anything else. Accepts
 * exactly what net.isIPv4 accepts (no leading zeros, each part at most 255), without its
 * regular expression's match array.
 */
export function ipv4Number(a: string): number {
  const len = a.length;
  if (len < 7 || len > 15) return -1;
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < len; i++) {
    const c = a.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return -1;
      n = n * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits === 1 && part === 0) return -1; // a leading zero
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return -1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + part;
}

/** True when addr/bits (IPv6) shares any address with ::ffff:0:0/96 (or cannot be read). */
function overlapsIpv4Mapped(addr: string, bits: number): boolean {
  const words = ipv6Words(addr);
  if (words === null) return true;
  const mapped = [0, 0, 0, 0, 0, 0xffff];
  // Two prefixes overlap when they agree on the shorter one's bits.
  let left = Math.min(bits, 96);
  for (let i = 0; left > 0; i++, left -= 16) {
    const keep = Math.min(16, left);
    const mask = (0xffff << (16 - keep)) & 0xffff;
    if ((words[i]! & mask) !== (mapped[i]! & mask)) return false;
  }
  return true;
}

export function normalizeIp(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

const LOOPBACK6 = new BlockList();
LOOPBACK6.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1, ::ffff:127.x.y.z and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h.toLowerCase() === 'localhost') return true;
  const v4 = h.toLowerCase().startsWith('::ffff:') ? h.slice(7) : h;
  if (isIP(v4) === 4) return v4.startsWith('127.');
  if (isIP(h) === 6) return LOOPBACK6.check(h, 'ipv6');
  return false;
}

/**
 * The key under which a client is counted: an IPv4 address itself, an IPv6 address masked to
 * its first `ipv6PrefixBits` bits ("2001:db8:0:1:0:0:0:0/64"). Counting IPv6 by /128 would let
 * one host open as many connections as it has addresses, and it has 2^64 of them.
 */
export function clientKey(address: string, ipv6PrefixBits: number): string {
  const a = normalizeIp(address);
  if (ipv4Number(a) >= 0 || isIP(a) !== 6 || ipv6PrefixBits >= 128) return a;
  const words = ipv6Words(a);
  if (words === null) return a;
  let bits = ipv6PrefixBits;
  for (let i = 0; i < 8; i++) {
    const keep = bits >= 16 ? 16 : bits > 0 ? bits : 0;
    words[i] = keep === 0 ? 0 : words[i]! & ((0xffff << (16 - keep)) & 0xffff);
    bits -= keep;
  }
  return `${words.map((w) => w.toString(16)).join(':')}/${ipv6PrefixBits}`;
}

/** The eight 16-bit words of an IPv6 address (with '::', a zone id or a dotted IPv4 tail). */
export function ipv6Words(a: string): number[] | null {
  const pct = a.indexOf('%');
  if (pct >= 0) a = a.slice(0, pct);
  let tail: number[] = [];
  const lastColon = a.lastIndexOf(':');
  if (a.indexOf('.', lastColon) > 0) {
    const v4 = a.slice(lastColon + 1).split('.').map(Number);
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    a = a.slice(0, lastColon + 1) + '0';
  }
  const halves = a.split('::');
  const parse = (h: string): number[] => (h === '' ? [] : h.split(':').map((x) => parseInt(x, 16)));
  const head = parse(halves[0]!);
  const rest = halves.length > 1 ? parse(halves[1]!) : [];
  if (tail.length > 0) (halves.length > 1 ? rest : head).pop();
  const fill = 8 - head.length - rest.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const words = [...head, ...new Array<number>(fill).fill(0), ...rest, ...tail];
  return words.length === 8 && words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : null;
}

/**
 * An IPv6 address from its eight 16-bit words, in the text form of RFC 5952 §4, the form
 * node:net reports for a socket's peer: lower-case hex without leading zeros, the longest run
 * of two or more zero words (the first of equal runs) as '::', and an IPv4-mapped address
 * (::ffff:0:0/96) with its IPv4 tail dotted (§5), which normalizeIp then reads as IPv4.
 */
export function ipv6Text(words: ArrayLike<number>): string {
  if (words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0xffff) {
    const a = words[6]!;
    const b = words[7]!;
    return `::ffff:${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
  }
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string => Array.from({ length: to - from }, (_, k) => words[from + k]!.toString(16)).join(':');
  if (best < 0) return hex(0, 8);
  return `${hex(0, best)}::${hex(best + bestLen, 8)}`;
}
