// PROXY protocol headers written byte by byte from HAProxy's doc/proxy-protocol.txt (not with
// postern's parser), for the tests that play a proxy.
import { isIPv4 } from 'node:net';
import { crc32c } from '../../src/lib/crc32c.js';
import { ipv6Words } from '../../src/lib/networks.js';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** "PROXY TCP4|TCP6 src dst sport dport\r\n", the family from the source address. */
export function proxyV1(source: string, destination = isIPv4(source) ? '127.0.0.1' : '::1', sourcePort = 40000, destinationPort = 25): Buffer {
  return Buffer.from(`PROXY ${isIPv4(source) ? 'TCP4' : 'TCP6'} ${source} ${destination} ${sourcePort} ${destinationPort}\r\n`, 'latin1');
}

export interface V2Options {
  /** 0 LOCAL, 1 PROXY (default). */
  command?: number;
  /** The 14th byte; default from the source address (0x11 TCP/IPv4, 0x21 TCP/IPv6). */
  famProto?: number;
  source?: string;
  destination?: string;
  sourcePort?: number;
  destinationPort?: number;
  /** Raw address block instead of the one made from the addresses. */
  addressBlock?: Buffer;
  tlvs?: Array<{ type: number; value: Buffer }>;
  /** Append a PP2_TYPE_CRC32C TLV with the right checksum (or this wrong one). */
  crc?: true | number;
  /** The 13th byte (default 0x20 | command). */
  verCmd?: number;
}

function addressBytes(a: string): Buffer {
  if (isIPv4(a)) return Buffer.from(a.split('.').map(Number));
  const words = ipv6Words(a);
  if (words === null) throw new Error(`not an address: ${a}`);
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(w, 2 * i));
  return b;
}

export function proxyV2(o: V2Options = {}): Buffer {
  const command = o.command ?? 1;
  const source = o.source ?? '192.0.2.1';
  const destination = o.destination ?? (isIPv4(source) ? '127.0.0.1' : '::1');
  const famProto = o.famProto ?? (command === 0 ? 0x00 : isIPv4(source) ? 0x11 : 0x21);
  let block: Buffer;
  if (o.addressBlock) block = o.addressBlock;
  else if (command === 0 || famProto === 0) block = Buffer.alloc(0);
  else {
    const ports = Buffer.alloc(4);
    ports.writeUInt16BE(o.sourcePort ?? 40000, 0);
    ports.writeUInt16BE(o.destinationPort ?? 25, 2);
    block = Buffer.concat([addressBytes(source), addressBytes(destination), ports]);
  }
  const tlvs = (o.tlvs ?? []).map(({ type, value }) => {
    const h = Buffer.alloc(3);
    h[0] = type;
    h.writeUInt16BE(value.length, 1);
    return Buffer.concat([h, value]);
  });
  if (o.crc !== undefined) tlvs.push(Buffer.from([0x03, 0x00, 0x04, 0, 0, 0, 0]));
  const rest = Buffer.concat([block, ...tlvs]);
  const head = Buffer.alloc(16);
  V2_SIGNATURE.copy(head);
  head[12] = o.verCmd ?? (0x20 | command);
  head[13] = famProto;
  head.writeUInt16BE(rest.length, 14);
  const out = Buffer.concat([head, rest]);
  if (o.crc !== undefined) out.writeUInt32BE(o.crc === true ? crc32c(out) : o.crc, out.length - 4);
  return out;
}
