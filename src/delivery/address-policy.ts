// Which IP addresses delivery may connect to on its own initiative: the one policy applied to
// address literals (x@[10.0.0.1]), to MX hosts and to every A/AAAA answer. A hostile sender or
// DNS zone must not make the node connect to itself or to the networks behind it (loopback,
// RFC 1918, link-local with the cloud metadata service at 169.254.169.254, CGNAT, ULA,
// multicast, unspecified and reserved space). Internal next hops are reached only through
// routes the operator wrote, or with POSTERN_DELIVERY_ALLOW_PRIVATE for the private ranges.
// IPv6 forms that embed an IPv4 address (mapped, SIIT, NAT64, 6to4) are judged by that address;
// the node's own addresses are matched as numbers, whatever the spelling (::ffff:a.b.c.d, '::').
import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { networkInterfaces } from 'node:os';
import { ipv6Words } from '../lib/networks.js';
import { failure, success, type Result } from '../lib/result.js';

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
  ['reserved', '::', 96, 'ipv6'], // IPv4-compatible (::a.b.c.d), deprecated by RFC 4291 §2.5.5.1
  ['private', '64:ff9b:1::', 48, 'ipv6'], // local-use NAT64 (RFC 8215): a translator inside the operator's network
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

/** The IPv4 address inside an IPv6 form that carries one (::ffff:a.b.c.d, ::ffff:0:a.b.c.d, 64:ff9b::/96, 2002::/16), else null. */
function embeddedV4(v6: string): string | null {
  const lower = v6.toLowerCase();
  const dotted = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1]!;
  const words = ipv6Words(lower);
  if (words === null) return null;
  const v4 = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return v4(words[6]!, words[7]!); // mapped
  if (words.slice(0, 4).every((w) => w === 0) && words[4] === 0xffff && words[5] === 0) return v4(words[6]!, words[7]!); // SIIT (RFC 2765)
  if (words[0] === 0x64 && words[1] === 0xff9b && words.slice(2, 6).every((w) => w === 0)) return v4(words[6]!, words[7]!); // NAT64 (RFC 6052)
  if (words[0] === 0x2002) return v4(words[1]!, words[2]!); // 6to4 (RFC 3056)
  return null;
}

function withoutZone(address: string): string {
  const pct = address.indexOf('%');
  return pct < 0 ? address : address.slice(0, pct);
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

/** Connecting is allowed, or refused with the address's class and a sentence saying why. */
export type AddressVerdict = Result<undefined, { cls: AddressClass; reason: string }>;

export class AddressPolicy {
  readonly #allowPrivate: boolean;
  readonly #allowLoopback: boolean;
  /** The node's own addresses as numbers: '2001:db8:0::5' and '::ffff:203.0.113.5' are found whatever the spelling. */
  readonly #own = new BlockList();

  constructor(opts: AddressPolicyOptions = {}) {
    this.#allowPrivate = opts.allowPrivate ?? false;
    this.#allowLoopback = opts.allowLoopback ?? false;
    const own = opts.ownAddresses ?? Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
    for (const a of own) {
      const bare = withoutZone(a);
      const fam = isIP(bare);
      if (fam === 0) continue;
      const v4 = fam === 6 ? embeddedV4(bare) : null;
      if (v4 !== null) this.#own.addAddress(v4, 'ipv4');
      else this.#own.addAddress(bare, fam === 4 ? 'ipv4' : 'ipv6');
    }
  }

  #isOwn(address: string): boolean {
    const bare = withoutZone(address);
    const fam = isIP(bare);
    if (fam === 4) return this.#own.check(bare, 'ipv4');
    const v4 = embeddedV4(bare); // NAT64 and 6to4 forms of an own IPv4 address reach it too
    return v4 !== null ? this.#own.check(v4, 'ipv4') : this.#own.check(bare, 'ipv6');
  }

  /** The class of an address as this node sees it ('self' for its own addresses). */
  classify(address: string): AddressClass {
    const cls = classifyAddress(address);
    if (cls === 'invalid') return cls;
    if (cls !== 'loopback' && this.#isOwn(address)) return 'self';
    return cls;
  }

  check(address: string): AddressVerdict {
    const cls = this.classify(address);
    if (cls === 'public') return success(undefined);
    if (cls === 'loopback' && this.#allowLoopback) return success(undefined);
    if ((cls === 'private' || cls === 'shared') && this.#allowPrivate) return success(undefined);
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
    return failure({ cls, reason: `${address} ${why[cls]}` });
  }
}

/**
 * A `lookup` for a connector (undici's `connect.lookup`, net.connect) that keeps only the
 * addresses `policy` allows, so the address connected to is one that passed (no DNS rebinding
 * between the check and the connection). `resolve` gives a name's addresses (default: the
 * system's resolver). A name with none left fails with ENOTFOUND, naming what it had.
 */
export function policyLookup(policy: AddressPolicy, resolve: (host: string) => Promise<string[]> = async (h) => (await dnsLookup(h, { all: true })).map((a) => a.address)): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (addrs) => {
        const ok = addrs.filter((a) => policy.check(a).ok);
        if (ok.length === 0) {
          callback(Object.assign(new Error(`${hostname} has no usable address (${addrs.slice(0, 4).join(', ') || 'none'})`), { code: 'ENOTFOUND' }), '', 0);
          return;
        }
        const family = (a: string): number => (a.includes(':') ? 6 : 4);
        if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, ok.map((address) => ({ address, family: family(address) })));
        else callback(null, ok[0]!, family(ok[0]!));
      },
      (err: Error) => callback(Object.assign(err, { code: (err as { code?: string }).code ?? 'ENOTFOUND' }), '', 0),
    );
  };
}
