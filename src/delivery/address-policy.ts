// Which IP addresses delivery may connect to on its own initiative: the one policy applied to
// address literals (x@[10.0.0.1]), to MX hosts and to every A/AAAA answer. A hostile sender or
// DNS zone must not make the node connect to itself or to the networks behind it (loopback,
// RFC 1918, link-local with the cloud metadata service at 169.254.169.254, CGNAT, ULA,
// multicast, unspecified and reserved space). Internal next hops are reached only through
// routes the operator wrote, or with POSTERN_DELIVERY_ALLOW_PRIVATE for the private ranges.
// IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4) are judged by that address.
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { ipv6Words } from '../lib/networks.js';

export type AddressClass = 'public' | 'self' | 'loopback' | 'private' | 'link-local' | 'shared' | 'multicast' | 'unspecified' | 'reserved' | 'invalid';

const RANGES: ReadonlyArray<readonly [AddressClass, string, number, 'ipv4' | 'ipv6']> = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'], // "this network" (RFC 1122 §3.2.1.3)
  ['private', '10.0.0.0', 8, 'ipv4'], // RFC 1918
  ['shared', '100.64.0.0', 10, 'ipv4'], // CGNAT (RFC 6598)
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'], // RFC 3927; cloud metadata lives here
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['reserved', '192.0.0.0', 24, 'ipv4'], // IETF protocol assignments (RFC 6890)
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['reserved', '198.18.0.0', 15, 'ipv4'], // benchmarking (RFC 2544)
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'], // incl. 255.255.255.255
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '::1', 128, 'ipv6'],
  ['reserved', '100::', 64, 'ipv6'], // discard-only (RFC 6666)
  ['private', 'fc00::', 7, 'ipv6'], // unique local (RFC 4193)
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['private', 'fec0::', 10, 'ipv6'], // deprecated site-local
  ['multicast', 'ff00::', 8, 'ipv6'],
];

const LISTS = new Map<AddressClass, BlockList>();
for (const [cls, net, bits, fam] of RANGES) {
  let l = LISTS.get(cls);
  if (!l) LISTS.set(cls, (l = new BlockList()));
  l.addSubnet(net, bits, fam);
}

/** The IPv4 address inside an IPv6 form that carries one (::ffff:a.b.c.d, 64:ff9b::/96, 2002::/16), else null. */
function embeddedV4(v6: string): string | null {
  const lower = v6.toLowerCase();
  const dotted = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1]!;
  const words = ipv6Words(lower);
  if (words === null) return null;
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return v4(words[6]!, words[7]!); // mapped
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0)) return v4(words[6]!, words[7]!); // NAT64 (RFC 6052)
  if (words[0] === 0x2002) return v4(words[1]!, words[2]!); // 6to4 (RFC 3056)
  return null;
}

/** The class of an address, without the node's own addresses (see AddressPolicy). */
export function classifyAddress(address: string): AddressClass {
  const fam = isIP(address);
  if (fam === 0) return 'invalid';
  if (fam === 6) {
    const v4 = embeddedV4(address);
    if (v4 !== null) return classifyAddress(v4);
  }
  const type = fam === 4 ? 'ipv4' : 'ipv6';
  for (const [cls, list] of LISTS) if (list.check(address, type)) return cls;
  return 'public';
}

export interface AddressPolicyOptions {
  /** Let MX hosts and literals be in the private ranges (RFC 1918, CGNAT, ULA): an internal mail network. */
  readonly allowPrivate?: boolean;
  /** Let them be loopback too (a lab, the tests). Never the default. */
  readonly allowLoopback?: boolean;
  /** The node's own addresses; default: every interface address of this host. */
  readonly ownAddresses?: readonly string[];
}

export type AddressVerdict = { ok: true } | { ok: false; cls: AddressClass; reason: string };

export class AddressPolicy {
  readonly #allowPrivate: boolean;
  readonly #allowLoopback: boolean;
  readonly #own: ReadonlySet<string>;

  constructor(opts: AddressPolicyOptions = {}) {
    this.#allowPrivate = opts.allowPrivate ?? false;
    this.#allowLoopback = opts.allowLoopback ?? false;
    const own = opts.ownAddresses ?? Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
    this.#own = new Set(own.map((a) => a.toLowerCase()));
  }

  /** The class of an address as this node sees it ('self' for its own addresses). */
  classify(address: string): AddressClass {
    const cls = classifyAddress(address);
    if (cls === 'invalid') return cls;
    if (cls !== 'loopback' && this.#own.has(address.toLowerCase())) return 'self';
    return cls;
  }

  check(address: string): AddressVerdict {
    const cls = this.classify(address);
    if (cls === 'public') return { ok: true };
    if (cls === 'loopback' && this.#allowLoopback) return { ok: true };
    if ((cls === 'private' || cls === 'shared') && this.#allowPrivate) return { ok: true };
    const why: Record<AddressClass, string> = {
      public: '',
      self: 'is this node (mail would loop back to myself)',
      loopback: 'is loopback (mail would loop back to myself)',
      private: 'is in a private range (set POSTERN_DELIVERY_ALLOW_PRIVATE or a route to deliver there)',
      shared: 'is in the shared CGNAT range (set POSTERN_DELIVERY_ALLOW_PRIVATE or a route to deliver there)',
      'link-local': 'is link-local',
      multicast: 'is multicast',
      unspecified: 'is unspecified',
      reserved: 'is reserved',
      invalid: 'is not an IP address',
    };
    return { ok: false, cls, reason: `${address} ${why[cls]}` };
  }
}
