// A small DNS client (RFC 1035) for one purpose: asking a validating resolver (a local
// unbound) for MX, TLSA, A and AAAA records and the CNAMEs leading to them, with EDNS0 and the
// DO bit (RFC 6891, RFC 3225), and reading the AD bit of its answer (RFC 4035 §3.2.3), which
// node's resolver does not expose. UDP, and
// TCP when the answer is truncated (TC). Every answer is hostile until checked: the id and the
// question must match ours, lengths, counts, names and compression pointers are bounded, and a
// malformed packet is an error, never a partial answer.
// Why not dns-packet: it fits, but it is not installed in this tree and would add a dependency
// for about two hundred lines that decode only the MX, TLSA and CNAME records DANE needs.
import { createSocket } from 'node:dgram';
import { connect as netConnect } from 'node:net';
import { randomBytes } from 'node:crypto';

export const TYPE = { A: 1, CNAME: 5, MX: 15, AAAA: 28, OPT: 41, TLSA: 52 } as const;

export interface DnsRecord {
  name: string;
  type: number;
  ttl: number;
  /** The RDATA as received (for types this module does not decode). */
  rdata: Buffer;
  /** MX. */
  exchange?: string;
  priority?: number;
  /** CNAME: the name it points to. */
  target?: string;
  /** TLSA. */
  tlsa?: { usage: number; selector: number; matching: number; data: string };
}

export interface DnsAnswer {
  rcode: number;
  /** Authenticated Data: the resolver validated the answer with DNSSEC. */
  ad: boolean;
  answers: DnsRecord[];
}

export const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 } as const;

const MAX_RECORDS = 256;
const MAX_NAME = 255;
const MAX_POINTERS = 64;
/** EDNS0 UDP payload we advertise (the DNS flag day 2020 figure). */
const UDP_SIZE = 1232;

export class DnsWireError extends Error {}

/** The query packet: RD set, one question, an OPT record with DO. */
export function encodeQuery(id: number, name: string, type: number): Buffer {
  const labels = name.replace(/\.$/, '').split('.');
  const parts: Buffer[] = [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4); // QDCOUNT
  header.writeUInt16BE(1, 10); // ARCOUNT: the OPT record
  parts.push(header);
  let total = 1;
  for (const l of labels) {
    // ASCII only (an IDN comes as A-labels): Buffer's 'ascii' would silently mangle "ü" into
    // another name.
    if (!/^[\x21-\x7e]{1,63}$/.test(l)) throw new DnsWireError(`bad label in ${JSON.stringify(name.slice(0, 300))}`);
    const b = Buffer.from(l, 'latin1');
    total += b.length + 1;
    parts.push(Buffer.from([b.length]), b);
  }
  if (total > MAX_NAME) throw new DnsWireError(`name too long: ${name}`);
  const tail = Buffer.alloc(1 + 4 + 11);
  tail.writeUInt8(0, 0); // root
  tail.writeUInt16BE(type, 1);
  tail.writeUInt16BE(1, 3); // IN
  // OPT: root name, type 41, class = UDP size, TTL = ext-rcode 0, version 0, flags DO (0x8000), rdlen 0.
  tail.writeUInt8(0, 5);
  tail.writeUInt16BE(TYPE.OPT, 6);
  tail.writeUInt16BE(UDP_SIZE, 8);
  tail.writeUInt32BE(0x00008000, 10);
  tail.writeUInt16BE(0, 14);
  parts.push(tail);
  return Buffer.concat(parts);
}

/** A name at `pos` (with compression); returns it lower-cased and where the record goes on. */
function readName(buf: Buffer, pos: number): { name: string; next: number } {
  const labels: string[] = [];
  let next = -1;
  let jumps = 0;
  let len = 0;
  for (;;) {
    if (pos >= buf.length) throw new DnsWireError('name runs past the packet');
    const b = buf[pos]!;
    if ((b & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new DnsWireError('cut compression pointer');
      if (++jumps > MAX_POINTERS) throw new DnsWireError('compression loop');
      if (next < 0) next = pos + 2;
      const target = ((b & 0x3f) << 8) | buf[pos + 1]!;
      if (target >= pos) throw new DnsWireError('forward compression pointer');
      pos = target;
      continue;
    }
    if ((b & 0xc0) !== 0) throw new DnsWireError('unknown label type');
    if (b === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    if (pos + 1 + b > buf.length) throw new DnsWireError('label runs past the packet');
    len += b + 1;
    if (len > MAX_NAME) throw new DnsWireError('name too long');
    labels.push(buf.toString('latin1', pos + 1, pos + 1 + b).toLowerCase());
    pos += 1 + b;
  }
  return { name: labels.join('.'), next };
}

/** Parse an answer to the query `id` for (`name`, `type`). Throws DnsWireError when it is not one. */
export function decodeAnswer(buf: Buffer, id: number, name: string, type: number): DnsAnswer & { tc: boolean } {
  if (buf.length < 12 || buf.length > 65_535) throw new DnsWireError('packet size out of bounds');
  if (buf.readUInt16BE(0) !== id) throw new DnsWireError('id does not match');
  const flags = buf.readUInt16BE(2);
  if ((flags & 0x8000) === 0) throw new DnsWireError('not a response');
  if (((flags >> 11) & 0xf) !== 0) throw new DnsWireError('not a standard query response');
  const tc = (flags & 0x0200) !== 0;
  const ad = (flags & 0x0020) !== 0;
  const rcode = flags & 0xf;
  const qd = buf.readUInt16BE(4);
  const an = buf.readUInt16BE(6);
  if (qd !== 1) throw new DnsWireError('question count is not 1');
  if (an > MAX_RECORDS) throw new DnsWireError('too many answers');
  const q = readName(buf, 12);
  if (q.next + 4 > buf.length) throw new DnsWireError('cut question');
  if (q.name !== name.toLowerCase().replace(/\.$/, '') || buf.readUInt16BE(q.next) !== type || buf.readUInt16BE(q.next + 2) !== 1) throw new DnsWireError('question does not match');
  let pos = q.next + 4;
  const answers: DnsRecord[] = [];
  if (tc) return { rcode, ad, answers, tc };
  for (let i = 0; i < an; i++) {
    const n = readName(buf, pos);
    pos = n.next;
    if (pos + 10 > buf.length) throw new DnsWireError('cut record header');
    const rtype = buf.readUInt16BE(pos);
    const rclass = buf.readUInt16BE(pos + 2);
    const ttl = buf.readUInt32BE(pos + 4);
    const rdlen = buf.readUInt16BE(pos + 8);
    pos += 10;
    if (pos + rdlen > buf.length) throw new DnsWireError('cut record data');
    const rdata = buf.subarray(pos, pos + rdlen);
    const rec: DnsRecord = { name: n.name, type: rtype, ttl: Math.min(ttl, 0x7fffffff), rdata: Buffer.from(rdata) };
    if (rclass === 1 && rtype === TYPE.MX) {
      if (rdlen < 3) throw new DnsWireError('short MX');
      const ex = readName(buf, pos + 2);
      if (ex.next > pos + rdlen) throw new DnsWireError('MX name past its record');
      rec.priority = buf.readUInt16BE(pos);
      rec.exchange = ex.name;
    } else if (rclass === 1 && rtype === TYPE.CNAME) {
      const tg = readName(buf, pos);
      if (tg.next > pos + rdlen) throw new DnsWireError('CNAME name past its record');
      rec.target = tg.name;
    } else if (rclass === 1 && rtype === TYPE.TLSA) {
      if (rdlen < 3) throw new DnsWireError('short TLSA');
      rec.tlsa = { usage: rdata[0]!, selector: rdata[1]!, matching: rdata[2]!, data: rdata.subarray(3).toString('hex') };
    }
    pos += rdlen;
    answers.push(rec);
  }
  return { rcode, ad, answers, tc };
}

export interface DnsServerAddress {
  host: string;
  port: number;
}

/** One question to the resolver: UDP first, TCP when truncated; rejects on timeout or a bad answer. */
export async function query(server: DnsServerAddress, name: string, type: number, timeoutMs: number): Promise<DnsAnswer> {
  const id = randomBytes(2).readUInt16BE(0);
  const packet = encodeQuery(id, name, type);
  const udp = await queryUdp(server, packet, id, name, type, timeoutMs);
  if (!udp.tc) return udp;
  return queryTcp(server, packet, id, name, type, timeoutMs);
}

function queryUdp(server: DnsServerAddress, packet: Buffer, id: number, name: string, type: number, timeoutMs: number): Promise<DnsAnswer & { tc: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(server.host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => finish(new DnsWireError(`no answer from ${server.host}:${server.port} within ${timeoutMs} ms`)), timeoutMs);
    let done = false;
    const finish = (err: Error | null, a?: DnsAnswer & { tc: boolean }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(a!);
    };
    sock.on('error', (e) => finish(e));
    sock.on('message', (msg, rinfo) => {
      // Only the resolver's own address and port; anything else is spoofing noise: ignored.
      if (rinfo.port !== server.port || rinfo.address !== server.host) return;
      try {
        finish(null, decodeAnswer(msg, id, name, type));
      } catch (e) {
        if (e instanceof DnsWireError && /id does not match|question does not match/.test(e.message)) return; // a stray answer: wait on
        finish(e as Error);
      }
    });
    sock.send(packet, server.port, server.host, (e) => e && finish(e));
  });
}

function queryTcp(server: DnsServerAddress, packet: Buffer, id: number, name: string, type: number, timeoutMs: number): Promise<DnsAnswer & { tc: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = netConnect(server.port, server.host);
    const chunks: Buffer[] = [];
    let got = 0;
    let want = -1;
    let done = false;
    const timer = setTimeout(() => finish(new DnsWireError(`no TCP answer from ${server.host}:${server.port} within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | null, a?: DnsAnswer & { tc: boolean }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(a!);
    };
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(new DnsWireError('TCP connection closed before the answer')));
    sock.on('data', (b: Buffer) => {
      chunks.push(b);
      got += b.length;
      if (got > 65_537) return finish(new DnsWireError('TCP answer too long'));
      const all = Buffer.concat(chunks);
      if (want < 0 && all.length >= 2) want = all.readUInt16BE(0);
      if (want >= 0 && all.length >= 2 + want) {
        try {
          const a = decodeAnswer(all.subarray(2, 2 + want), id, name, type);
          if (a.tc) return finish(new DnsWireError('truncated TCP answer'));
          finish(null, a);
        } catch (e) {
          finish(e as Error);
        }
      }
    });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(packet.length, 0);
    sock.write(Buffer.concat([len, packet]));
  });
}
