// Membership of client addresses in CIDR lists (trusted networks), on node's BlockList, and
// what counts as loopback. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack
// listener reports) are matched as IPv4.
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
