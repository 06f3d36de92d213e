// The PROXY protocol parser (HAProxy doc/proxy-protocol.txt v1 and v2): valid headers of every
// family, TLVs skipped or checked (CRC32C), every malformed form refused, truncated headers
// never taken, and any split of header + SMTP bytes into chunks giving the same header and
// the same SMTP bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_V1_BYTES, MAX_V2_BYTES, ProxyHeaderReader, parseProxyHeader, type ProxyHeader, type ProxyHeaderResult } from '../../src/protocol/proxy-header.js';
import { crc32c } from '../../src/lib/crc32c.js';
import { ipv6Text, ipv6Words } from '../../src/lib/networks.js';
import { proxyV1, proxyV2, V2_SIGNATURE } from '../helpers/proxy-header.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

function header(r: ProxyHeaderResult): { header: ProxyHeader; end: number } {
  assert.equal(r.kind, 'header', r.kind === 'invalid' ? r.reason : r.kind);
  return r as { kind: 'header'; header: ProxyHeader; end: number };
}
function reason(r: ProxyHeaderResult): string {
  assert.equal(r.kind, 'invalid', JSON.stringify(r));
  return (r as { reason: string }).reason;
}

test('crc32c: the RFC 3720 check value, and ipv6Text in RFC 5952 form', () => {
  assert.equal(crc32c(b('123456789')), 0xe3069283);
  assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
  const cases: Array<[string, string]> = [
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of equal runs
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero word is not compressed
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['fe80:0:0:0:0:0:0:0', 'fe80::'],
    ['::ffff:c000:0201', '::ffff:192.0.2.1'],
  ];
  for (const [input, want] of cases) assert.equal(ipv6Text(ipv6Words(input)!), want, input);
});

test('v1: TCP4 and TCP6, addresses canonical, the SMTP bytes after the CRLF left alone', () => {
  const wire = Buffer.concat([proxyV1('192.0.2.1', '198.51.100.2', 56324, 25), b('EHLO x\r\n')]);
  const h = header(parseProxyHeader(wire));
  assert.deepEqual(h.header, { version: 1, addresses: { family: 4, source: '192.0.2.1', sourcePort: 56324, destination: '198.51.100.2', destinationPort: 25 } });
  assert.equal(wire.subarray(h.end).toString('latin1'), 'EHLO x\r\n');

  const v6 = header(parseProxyHeader(b('PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::1 0 65535\r\n')));
  assert.deepEqual(v6.header.addresses, { family: 6, source: '2001:db8::1', sourcePort: 0, destination: '::1', destinationPort: 65535 });
  const mapped = header(parseProxyHeader(b('PROXY TCP6 ::ffff:192.0.2.9 ::1 1 2\r\n')));
  assert.equal(mapped.header.addresses?.source, '::ffff:192.0.2.9');
});

test('v1: UNKNOWN, short or with anything up to the CRLF, keeps the connection\'s endpoints', () => {
  assert.deepEqual(header(parseProxyHeader(b('PROXY UNKNOWN\r\nQUIT\r\n'))), { kind: 'header', header: { version: 1, addresses: null, unspecified: 'unknown' }, end: 15 });
  const worst = b(`PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`);
  assert.equal(worst.length, MAX_V1_BYTES);
  assert.equal(header(parseProxyHeader(worst)).end, MAX_V1_BYTES);
  // The longest TCP6 line too.
  const tcp6 = b(`PROXY TCP6 ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`);
  assert.equal(header(parseProxyHeader(tcp6)).header.addresses?.source, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
});

test('v1: every malformed line is invalid, never partial once the fault is visible', () => {
  const bad: string[] = [
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n', // bare LF
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX\r\n', // bare CR
    'PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n', // two spaces
    'PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n', // trailing space
    'PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n', // a field missing
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n', // one too many
    'PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n',
    'PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n', // case matters
    'PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n', // leading zero (octal confusion)
    'PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n',
    'PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n',
    'PROXY TCP4 ::1 198.51.100.2 1 2\r\n', // family mismatch
    'PROXY TCP6 192.0.2.1 ::1 1 2\r\n',
    'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', // zone id
    'PROXY TCP6 [::1] ::1 1 2\r\n',
    'PROXY TCP6 1::2::3 ::1 1 2\r\n',
    'PROXY TCP6 12345:: ::1 1 2\r\n',
    'PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n', // leading zero port
    'PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 0x19\r\n',
    'PROXY\r\n',
    'PROXY \r\n',
    'PROXY TCP4\r\n',
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2\x00\r\n', // NUL
    'PROXY TCP4 192.0.2.1 198.51.100.2 1 2\xe9\r\n', // 8-bit
    'PROXYTCP4 192.0.2.1 198.51.100.2 1 2\r\n',
    'proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n',
    'EHLO client.example\r\n', // SMTP without a header
    'P\r\n',
  ];
  for (const line of bad) {
    const r = parseProxyHeader(b(line));
    assert.equal(r.kind, 'invalid', JSON.stringify(line));
  }
  // No CRLF within 107 bytes: invalid at 107, partial before.
  const long = b('PROXY UNKNOWN ' + 'x'.repeat(200));
  assert.equal(parseProxyHeader(long.subarray(0, MAX_V1_BYTES - 1)).kind, 'partial');
  assert.match(reason(parseProxyHeader(long.subarray(0, MAX_V1_BYTES))), /no CRLF in the first 107/);
  // A 108-byte line (CRLF at 107-108) is one byte too long.
  const over = b(`PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 655350\r\n`);
  assert.equal(over.length, MAX_V1_BYTES + 1);
  assert.equal(parseProxyHeader(over).kind, 'invalid');
});

test('v2: TCP over IPv4 and IPv6, with the SMTP bytes after it', () => {
  const v4 = Buffer.concat([proxyV2({ source: '203.0.113.7', destination: '10.0.0.2', sourcePort: 61000, destinationPort: 25 }), b('EHLO x\r\n')]);
  const h4 = header(parseProxyHeader(v4));
  assert.deepEqual(h4.header, { version: 2, addresses: { family: 4, source: '203.0.113.7', sourcePort: 61000, destination: '10.0.0.2', destinationPort: 25 } });
  assert.equal(h4.end, 16 + 12);
  assert.equal(v4.subarray(h4.end).toString(), 'EHLO x\r\n');
  const h6 = header(parseProxyHeader(proxyV2({ source: '2001:db8::7', destination: '2001:db8::1:0:0:1', sourcePort: 1, destinationPort: 587 })));
  assert.deepEqual(h6.header.addresses, { family: 6, source: '2001:db8::7', sourcePort: 1, destination: '2001:db8::1:0:0:1', destinationPort: 587 });
  assert.equal(h6.end, 16 + 36);
  const mapped = header(parseProxyHeader(proxyV2({ source: '::ffff:192.0.2.5', destination: '::1' })));
  assert.equal(mapped.header.addresses?.source, '::ffff:192.0.2.5');
});

test('v2: TLVs are skipped (HAProxy\'s unique id, SSL with sub-TLVs, NOOP, custom), a right CRC32C accepted', () => {
  const ssl = Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0]), Buffer.from([0x21, 0x00, 0x07]), b('TLSv1.3')]);
  const tlvs = [
    { type: 0x05, value: b('unique-id-1234') },
    { type: 0x20, value: ssl },
    { type: 0x04, value: Buffer.alloc(0) },
    { type: 0xe0, value: Buffer.alloc(300, 0xff) },
    { type: 0x02, value: b('mx.example') },
  ];
  const wire = Buffer.concat([proxyV2({ source: '198.51.100.9', tlvs, crc: true }), b('QUIT\r\n')]);
  const h = header(parseProxyHeader(wire));
  assert.equal(h.header.addresses?.source, '198.51.100.9');
  assert.equal(wire.subarray(h.end).toString(), 'QUIT\r\n');
  // CRC32C in the middle of the TLVs, on IPv6.
  const v6 = proxyV2({ source: '2001:db8::9', crc: true, tlvs: [{ type: 0x04, value: Buffer.alloc(5) }] });
  assert.equal(header(parseProxyHeader(v6)).header.addresses?.source, '2001:db8::9');
});

test('v2: LOCAL (health checks), AF_UNSPEC, AF_UNIX and UDP keep the connection\'s endpoints', () => {
  assert.deepEqual(header(parseProxyHeader(proxyV2({ command: 0 }))), { kind: 'header', header: { version: 2, addresses: null, unspecified: 'local' }, end: 16 });
  // LOCAL with an address block (and a family): its length is honoured, its contents ignored.
  const local = proxyV2({ command: 0, famProto: 0x11, addressBlock: Buffer.alloc(12, 0xaa) });
  assert.deepEqual(header(parseProxyHeader(Buffer.concat([local, b('EHLO')]))), { kind: 'header', header: { version: 2, addresses: null, unspecified: 'local' }, end: 28 });
  assert.equal(header(parseProxyHeader(proxyV2({ famProto: 0x00 }))).header.unspecified, 'unspec');
  assert.equal(header(parseProxyHeader(proxyV2({ famProto: 0x31, addressBlock: Buffer.alloc(216) }))).header.unspecified, 'unix');
  assert.equal(header(parseProxyHeader(proxyV2({ famProto: 0x12, source: '192.0.2.1' }))).header.unspecified, 'dgram');
  assert.equal(header(parseProxyHeader(proxyV2({ famProto: 0x22, source: '2001:db8::1' }))).header.unspecified, 'dgram');
});

test('v2: every malformed header is invalid', () => {
  const good = proxyV2({ source: '192.0.2.1' });
  const cases: Array<[string, Buffer, RegExp]> = [
    ['bad signature', Buffer.concat([Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x01]), good.subarray(5)]), /signature/],
    ['version 1 in the binary form', proxyV2({ verCmd: 0x11 }), /version 1/],
    ['version 3', proxyV2({ verCmd: 0x31 }), /version 3/],
    ['command 2', proxyV2({ verCmd: 0x22 }), /command 2/],
    ['command 15', proxyV2({ verCmd: 0x2f }), /command 15/],
    ['family 4', proxyV2({ famProto: 0x41, addressBlock: Buffer.alloc(12) }), /family\/protocol/],
    ['protocol 3', proxyV2({ famProto: 0x13, addressBlock: Buffer.alloc(12) }), /family\/protocol/],
    ['family 1 protocol UNSPEC', proxyV2({ famProto: 0x10, addressBlock: Buffer.alloc(12) }), /family\/protocol/],
    ['family UNSPEC protocol STREAM', proxyV2({ famProto: 0x01 }), /family\/protocol/],
    ['IPv4 block too short', proxyV2({ famProto: 0x11, addressBlock: Buffer.alloc(11) }), /needs 12/],
    ['IPv6 block too short', proxyV2({ famProto: 0x21, addressBlock: Buffer.alloc(12) }), /needs 36/],
    ['UNIX block too short', proxyV2({ famProto: 0x31, addressBlock: Buffer.alloc(108) }), /needs 216/],
    ['TLV header cut', Buffer.concat([proxyV2({ addressBlock: Buffer.concat([Buffer.alloc(12), Buffer.from([0x04, 0x00])]) })]), /less than a TLV header/],
    ['TLV value past the end', proxyV2({ addressBlock: Buffer.concat([Buffer.alloc(12), Buffer.from([0x05, 0x00, 0x09, 1, 2])]) }), /runs past/],
    ['CRC32C wrong', proxyV2({ crc: 0x12345678 }), /CRC32C mismatch/],
    ['CRC32C of 3 bytes', proxyV2({ tlvs: [{ type: 0x03, value: Buffer.alloc(3) }] }), /CRC32C TLV of 3 bytes/],
    ['oversized', proxyV2({ tlvs: [{ type: 0xe0, value: Buffer.alloc(MAX_V2_BYTES) }] }), /more than the 4096/],
  ];
  for (const [what, wire, why] of cases) assert.match(reason(parseProxyHeader(wire)), why, what);
  // Oversized is refused from its 16 bytes, before the rest has come.
  assert.match(reason(parseProxyHeader(proxyV2({ tlvs: [{ type: 0xe0, value: Buffer.alloc(MAX_V2_BYTES) }] }).subarray(0, 16))), /more than/);
  // The largest accepted.
  const biggest = proxyV2({ tlvs: [{ type: 0xe0, value: Buffer.alloc(MAX_V2_BYTES - 16 - 12 - 3) }] });
  assert.equal(biggest.length, MAX_V2_BYTES);
  assert.equal(header(parseProxyHeader(biggest)).end, MAX_V2_BYTES);
  // A CRC32C over a LOCAL header is not looked at (the block is discarded whole).
  assert.equal(header(parseProxyHeader(proxyV2({ command: 0, tlvs: [{ type: 0x03, value: Buffer.alloc(4) }] }))).header.unspecified, 'local');
});

const VALID: Array<[string, Buffer]> = [
  ['v1 TCP4', proxyV1('192.0.2.1')],
  ['v1 TCP6', proxyV1('2001:db8::1', '2001:db8::2')],
  ['v1 UNKNOWN', b('PROXY UNKNOWN\r\n')],
  ['v2 IPv4', proxyV2({ source: '192.0.2.1' })],
  ['v2 IPv6 with TLVs and CRC', proxyV2({ source: '2001:db8::1', tlvs: [{ type: 0x05, value: b('id') }], crc: true })],
  ['v2 LOCAL', proxyV2({ command: 0 })],
];

test('every prefix of a valid header is partial (a truncated header is never taken)', () => {
  for (const [what, wire] of VALID) {
    for (let n = 0; n < wire.length; n++) assert.equal(parseProxyHeader(wire.subarray(0, n)).kind, 'partial', `${what}: ${n} bytes`);
  }
});

test('a header and SMTP bytes split at every offset, then at every pair of offsets: same header, same SMTP bytes', () => {
  const smtp = b('EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n');
  for (const [what, head] of VALID) {
    const wire = Buffer.concat([head, smtp]);
    const want = header(parseProxyHeader(wire));
    const check = (chunks: Buffer[], where: string): void => {
      const reader = new ProxyHeaderReader();
      for (let i = 0; i < chunks.length; i++) {
        const r = reader.feed(chunks[i]!);
        if (r.kind === 'partial') continue;
        const got = header(r);
        assert.deepEqual(got.header, want.header, `${what} ${where}`);
        const rest = Buffer.concat([chunks[i]!.subarray(got.end), ...chunks.slice(i + 1)]);
        assert.deepEqual(rest, smtp, `${what} ${where}`);
        return;
      }
      assert.fail(`${what} ${where}: no header`);
    };
    for (let i = 1; i < wire.length; i++) check([wire.subarray(0, i), wire.subarray(i)], `split at ${i}`);
    for (let i = 1; i < head.length + 2; i++) {
      for (let j = i + 1; j < head.length + 3; j++) check([wire.subarray(0, i), wire.subarray(i, j), wire.subarray(j)], `split at ${i},${j}`);
    }
    check([...wire].map((x) => Buffer.from([x])), 'byte by byte');
  }
});

test('the reader refuses a fault wherever the split falls, and holds at most the bound', () => {
  const broken = [b('PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n'), proxyV2({ crc: 7 }), b('EHLO x\r\n'), b('PROXY UNKNOWN ' + 'x'.repeat(MAX_V1_BYTES))];
  for (const wire of broken) {
    for (let i = 1; i < wire.length; i++) {
      const reader = new ProxyHeaderReader();
      const first = reader.feed(wire.subarray(0, i));
      const r = first.kind === 'partial' ? reader.feed(wire.subarray(i)) : first;
      assert.equal(r.kind, 'invalid', `${JSON.stringify(wire.toString('latin1'))} split at ${i}`);
    }
  }
  // An oversized v2 header in small pieces: refused at its 16th byte, nothing more held.
  const reader = new ProxyHeaderReader();
  const big = proxyV2({ tlvs: [{ type: 0xe0, value: Buffer.alloc(60000) }] });
  let r: ProxyHeaderResult = { kind: 'partial' };
  let fed = 0;
  while (r.kind === 'partial') r = reader.feed(big.subarray(fed, ++fed));
  assert.equal(fed, 16);
  assert.equal(r.kind, 'invalid');
  // A header just under the bound followed by a megabyte of SMTP in the same chunk: copies stay bounded.
  const near = proxyV2({ tlvs: [{ type: 0xe0, value: Buffer.alloc(MAX_V2_BYTES - 16 - 12 - 3) }] });
  const r2 = new ProxyHeaderReader();
  assert.equal(r2.feed(near.subarray(0, 100)).kind, 'partial');
  assert.equal(r2.heldBytes, 100);
  const tail = Buffer.concat([near.subarray(100), Buffer.alloc(1 << 20, 0x41)]);
  assert.equal(header(r2.feed(tail)).end, near.length - 100);
  assert.equal(r2.heldBytes, 0);
});

test('property: any bytes give a result without throwing; a header ends within the bound and re-parses the same', () => {
  const arbitrary = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
  // Mostly near-valid input: a valid header with some bytes changed.
  const mutated = fc
    .tuple(fc.constantFrom(...VALID.map(([, w]) => w)), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
    .map(([w, edits]) => {
      const c = Buffer.from(w);
      for (const [at, v] of edits) c[at % c.length] = v;
      return c;
    });
  fc.assert(
    fc.property(fc.oneof(arbitrary, mutated, fc.constant(V2_SIGNATURE)), (wire) => {
      const r = parseProxyHeader(wire);
      if (r.kind !== 'header') return;
      assert.ok(r.end > 0 && r.end <= wire.length && r.end <= MAX_V2_BYTES);
      assert.deepEqual(parseProxyHeader(wire.subarray(0, r.end)), r);
      const a = r.header.addresses;
      if (a !== null) {
        assert.ok(a.sourcePort >= 0 && a.sourcePort <= 65535);
        assert.ok(a.family === 4 ? /^\d+\.\d+\.\d+\.\d+$/.test(a.source) : a.source.includes(':'));
      }
    }),
    { numRuns: 3000 },
  );
});
