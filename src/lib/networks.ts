// Membership of client addresses in CIDR lists (trusted networks), on node's BlockList.
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a dual-stack listener reports) are
// matched as IPv4.
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
