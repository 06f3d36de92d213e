// Membership of client addresses in CIDR lists (trusted networks), on node's BlockList, what
// counts as loopback, and the key a client address is counted under for per-client limits:
// IPv4 by address, IPv6 by its prefix (one host usually owns a whole /64). IPv4-mapped IPv6
// addresses (::ffff:a.b.c.d, what a dual-stack listener reports) are matched as IPv4.
import { BlockList, isIP } from 'node:net';

export class NetworkList {
  readonly #list = new BlockList();
  readonly size: number;

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const slash = c.indexOf('/');
      const addr = slash < 0 ? c : c.slice(0, slash);
      const fam = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
      const bits = slash < 0 ? (fam === 'ipv6' ? 128 : 32) : Number(c.slice(slash + 1));
      this.#list.addSubnet(addr, bits, fam);
    }
    this.size = cidrs.length;
  }

  has(address: string | undefined): boolean {
    if (!address) return false;
    const a = normalizeIp(address);
    const fam = isIP(a);
    if (fam === 0) return false;
    return this.#list.check(a, fam === 6 ? 'ipv6' : 'ipv4');
  }
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
  if (isIP(a) !== 6 || ipv6PrefixBits >= 128) return a;
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
