// PROXY protocol on real sockets: the test plays the load balancer from 127.0.0.1
// (POSTERN_PROXY_TRUSTED=127.0.0.1/32) and writes the header itself. The address it carries is
// the one in the Received: header, the relay decision, the per-address connection limit, the
// AUTH back-off and the logs; SMTP bytes behind the header in the same write are answered
// after the greeting; a bad, cut or late header closes the connection with no byte sent; a
// header from an address outside the list is an unknown command. On the implicit-TLS port
// the header comes in clear before the client's handshake.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Duplex } from 'node:stream';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { RawClient } from '../helpers/smtp-client.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait-for.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { addUser } from '../../src/auth/users.js';
import { join } from 'node:path';
import { proxyV1, proxyV2 } from '../helpers/proxy-header.js';
import { createLogger } from '../../src/log/logger.js';
import type { PosternNode } from '../../src/main.js';

const PROXY_ENV = {
  POSTERN_PROXY_TRUSTED: '127.0.0.1/32',
  // Only this network relays: the proxy's own address (127.0.0.1) is not in it.
  POSTERN_TRUSTED_NETWORKS: '10.9.0.0/16',
  POSTERN_LOCAL_DOMAINS: 'local.example',
  POSTERN_PROXY_TIMEOUT_MS: '400ms',
};

interface LogLine {
  msg: string;
  [k: string]: unknown;
}

async function proxyNode(t: Parameters<typeof startTestNode>[0], env: Record<string, string> = {}): Promise<{ node: PosternNode; logs: LogLine[] }> {
  const logs: LogLine[] = [];
  const logger = createLogger('info', { write: (s: string) => void logs.push(JSON.parse(s) as LogLine) });
  const node = await startTestNode(t, { ...PROXY_ENV, ...env }, {}, logger);
  return { node, logs };
}

/** Connect from `localAddress` and write `first` at once (the header, maybe with commands). */
async function proxied(port: number, first: Buffer | string, localAddress = '127.0.0.1'): Promise<RawClient> {
  const c = await RawClient.connect(port, { localAddress });
  c.write(first);
  return c;
}

function receivedOf(node: PosternNode, reply: string): string {
  const id = /queued as (\S+)/.exec(reply)?.[1];
  assert.ok(id, reply);
  return node.queue.withBody(id, (b) => b.toString('latin1').split('\r\n\t')[0]!);
}

async function sendThrough(c: RawClient, rcpt: string): Promise<{ rcptCode: number; reply?: string }> {
  assert.equal((await c.cmd('EHLO client.example')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<s@sender.example>')).code, 250);
  const r = await c.cmd(`RCPT TO:<${rcpt}>`);
  if (r.code !== 250) {
    assert.equal((await c.cmd('RSET')).code, 250); // no open transaction to wait for at shutdown
    return { rcptCode: r.code };
  }
  assert.equal((await c.cmd('DATA')).code, 354);
  const done = await c.cmd('Subject: t\r\n\r\nhi\r\n.');
  assert.equal(done.code, 250, done.text);
  return { rcptCode: 250, reply: done.text };
}

/** Bytes the server sends until it closes (or `ms` pass), and whether it closed. */
async function readUntilClose(s: Socket, ms: number): Promise<{ bytes: Buffer; closed: boolean; afterMs: number }> {
  const chunks: Buffer[] = [];
  const t0 = Date.now();
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('error', () => {});
  const closed = await Promise.race([once(s, 'close').then(() => true), sleep(ms).then(() => false)]);
  return { bytes: Buffer.concat(chunks), closed, afterMs: Date.now() - t0 };
}

async function rawConnect(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1', localAddress });
  await once(s, 'connect');
  return s;
}

test('v1 and v2 headers: the carried address is in Received:, decides relaying, and is logged with the proxy', async (t) => {
  const { node, logs } = await proxyNode(t);
  const port = node.ports.smtpPort;

  // An outside client: may send to the local domain, may not relay.
  const outside = await proxied(port, proxyV1('192.0.2.77', '127.0.0.1', 51234, 25));
  t.after(() => outside.end());
  assert.equal((await outside.read()).code, 220);
  const local = await sendThrough(outside, 'user@local.example');
  assert.match(receivedOf(node, local.reply!), /^Received: from client\.example \(\[192\.0\.2\.77\]\)$/);
  assert.equal((await sendThrough(outside, 'user@elsewhere.example')).rcptCode, 550, 'relay denied to 192.0.2.77');

  // A client in the trusted network relays, though the proxy (127.0.0.1) is not trusted.
  const inside = await proxied(port, proxyV2({ source: '10.9.1.2', destination: '127.0.0.1', sourcePort: 40001 }));
  t.after(() => inside.end());
  assert.equal((await inside.read()).code, 220);
  const relayed = await sendThrough(inside, 'user@elsewhere.example');
  assert.match(receivedOf(node, relayed.reply!), /\(\[10\.9\.1\.2\]\)$/);

  // IPv6 in v2, IPv4-mapped IPv6 in v1 (read as the IPv4 address).
  const v6 = await proxied(port, proxyV2({ source: '2001:db8::5', destination: '::1' }));
  t.after(() => v6.end());
  assert.equal((await v6.read()).code, 220);
  assert.match(receivedOf(node, (await sendThrough(v6, 'user@local.example')).reply!), /\(\[2001:db8::5\]\)$/);
  const mapped = await proxied(port, 'PROXY TCP6 ::ffff:10.9.3.4 ::1 1000 25\r\n');
  t.after(() => mapped.end());
  assert.equal((await mapped.read()).code, 220);
  assert.match(receivedOf(node, (await sendThrough(mapped, 'user@elsewhere.example')).reply!), /\(\[10\.9\.3\.4\]\)$/);

  const connects = logs.filter((l) => l.msg === 'connect');
  assert.deepEqual(
    connects.map((l) => [l.ip, l.port, l.proxy, l.proxyVersion, l.trusted]),
    [
      ['192.0.2.77', 51234, '127.0.0.1', 1, false],
      ['10.9.1.2', 40001, '127.0.0.1', 2, true],
      ['2001:db8::5', 40000, '127.0.0.1', 2, false],
      ['10.9.3.4', 1000, '127.0.0.1', 1, true],
    ],
  );
  assert.ok(logs.some((l) => l.msg === 'relay denied' && l.ip === '192.0.2.77'), 'the session log names the carried address');
});

test('SMTP bytes in the same write as the header are answered after the greeting (pipelining through a proxy)', async (t) => {
  const { node } = await proxyNode(t);
  const c = await proxied(node.ports.smtpPort, Buffer.concat([proxyV2({ source: '192.0.2.8' }), Buffer.from('EHLO piped.example\r\nNOOP\r\n')]));
  t.after(() => c.end());
  const [greeting, ehlo, noop] = await c.readN(3);
  assert.equal(greeting!.code, 220);
  assert.equal(ehlo!.code, 250);
  assert.match(ehlo!.lines[0]!, /Hello|mx\.test\.example/);
  assert.equal(noop!.code, 250);
  // A header in pieces, with a pause, then a command in the last piece.
  const head = proxyV1('192.0.2.9');
  const d = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.1' });
  t.after(() => d.end());
  d.write(head.subarray(0, 7));
  await sleep(50);
  d.write(head.subarray(7, 20));
  await sleep(50);
  assert.equal(d.pending(), 0, 'nothing is sent before the header is complete');
  d.write(Buffer.concat([head.subarray(20), Buffer.from('NOOP\r\n')]));
  assert.deepEqual((await d.readN(2)).map((r) => r.code), [220, 250]);
});

test('a trusted proxy without a valid header is closed with no byte sent; slow headers meet the deadline', async (t) => {
  const { node, logs } = await proxyNode(t);
  const port = node.ports.smtpPort;
  const cases: Array<[string, Buffer | null, RegExp]> = [
    ['plain SMTP', Buffer.from('EHLO x\r\n'), /no PROXY protocol header/],
    ['bare LF', Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 1 25\n'), /bare LF/],
    ['bad address', Buffer.from('PROXY TCP4 192.0.2.300 127.0.0.1 1 25\r\n'), /address/],
    ['v2 bad CRC', proxyV2({ crc: 1 }), /CRC32C/],
    ['v2 oversized', proxyV2({ tlvs: [{ type: 0xe0, value: Buffer.alloc(5000) }] }), /more than the 4096/],
    ['v1 too long', Buffer.from('PROXY UNKNOWN ' + 'a'.repeat(200)), /no CRLF/],
    ['nothing at all', null, /no complete PROXY header within 400 ms/],
    ['a truncated header', proxyV2({ source: '192.0.2.1' }).subarray(0, 20), /no complete PROXY header within 400 ms/],
  ];
  for (const [what, bytes, why] of cases) {
    const s = await rawConnect(port);
    if (bytes) s.write(bytes);
    const r = await readUntilClose(s, 3000);
    assert.ok(r.closed, `${what}: closed`);
    assert.equal(r.bytes.length, 0, `${what}: no greeting or reply (${r.bytes.toString()})`);
    if (bytes === null) assert.ok(r.afterMs >= 350, `${what}: after the deadline (${r.afterMs} ms)`);
    await waitFor(`${what} logged`, () => logs.some((l) => l.msg.startsWith('PROXY header refused') && why.test(String(l.reason))));
  }
  // A header cut short by the proxy closing its side.
  const s = await rawConnect(port);
  s.end(proxyV1('192.0.2.1').subarray(0, 10));
  const r = await readUntilClose(s, 3000);
  assert.ok(r.closed && r.bytes.length === 0);
  await waitFor('the cut logged', () => logs.some((l) => /closed its side/.test(String(l.reason))));
  assert.equal(node.smtp.sessionCount, 0, 'no session was made for any of them');
});

test('from an address outside POSTERN_PROXY_TRUSTED a header is not read: greeted, then 500 to it', async (t) => {
  const { node, logs } = await proxyNode(t);
  const c = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.2' });
  t.after(() => c.end());
  assert.equal((await c.read()).code, 220, 'greeted at once: no header expected from 127.0.0.2');
  const r = await c.cmd(proxyV1('10.9.1.2').toString().trimEnd());
  assert.equal(r.code, 500);
  // The session stays 127.0.0.2 (not trusted: no relaying).
  assert.equal((await c.cmd('EHLO x')).code, 250);
  assert.equal((await c.cmd('MAIL FROM:<a@b.example>')).code, 250);
  assert.equal((await c.cmd('RCPT TO:<u@elsewhere.example>')).code, 550);
  assert.equal((await c.cmd('RSET')).code, 250);
  assert.ok(logs.some((l) => l.msg === 'connect' && l.ip === '127.0.0.2' && l.proxy === undefined));
  // v2 from outside: its binary signature is not a command either (the connection survives or
  // is closed, it is never read as a header).
  const d = await RawClient.connect(node.ports.smtpPort, { localAddress: '127.0.0.2' });
  t.after(() => d.end());
  assert.equal((await d.read()).code, 220);
  d.write(Buffer.concat([proxyV2({ source: '10.9.1.2' }), Buffer.from('\r\n')]));
  const bad = await d.read();
  assert.ok(bad.code >= 500, `${bad.code} ${bad.text}`);
  assert.ok(!logs.some((l) => l.msg === 'connect' && l.ip === '10.9.1.2'));
});

test('LOCAL (v2 health check) and UNKNOWN (v1) keep the proxy\'s own address', async (t) => {
  const { node, logs } = await proxyNode(t, { POSTERN_TRUSTED_NETWORKS: '127.0.0.1/32' });
  const local = await proxied(node.ports.smtpPort, proxyV2({ command: 0 }));
  t.after(() => local.end());
  assert.equal((await local.read()).code, 220);
  assert.equal((await local.cmd('QUIT')).code, 221);
  const unknown = await proxied(node.ports.smtpPort, 'PROXY UNKNOWN\r\n');
  t.after(() => unknown.end());
  assert.equal((await unknown.read()).code, 220);
  assert.match(receivedOf(node, (await sendThrough(unknown, 'u@elsewhere.example')).reply!), /\(\[127\.0\.0\.1\]\)$/);
  assert.deepEqual(
    logs.filter((l) => l.msg === 'connect').map((l) => [l.ip, l.proxyUnspecified, l.trusted]),
    [
      ['127.0.0.1', 'local', true],
      ['127.0.0.1', 'unknown', true],
    ],
  );
});

test('the per-address connection limit counts the carried address, not the proxy', async (t) => {
  const { node } = await proxyNode(t, { POSTERN_MAX_CONNECTIONS_PER_IP: '2' });
  const port = node.ports.smtpPort;
  const open: RawClient[] = [];
  t.after(() => open.forEach((c) => c.end()));
  for (let i = 0; i < 2; i++) {
    const c = await proxied(port, proxyV1('192.0.2.50', '127.0.0.1', 1000 + i));
    open.push(c);
    assert.equal((await c.read()).code, 220);
  }
  const third = await proxied(port, proxyV1('192.0.2.50', '127.0.0.1', 1003));
  open.push(third);
  const refused = await third.read();
  assert.equal(refused.code, 421);
  assert.match(refused.text, /Too many connections from your address/);
  // Another client through the same proxy is served.
  const other = await proxied(port, proxyV2({ source: '192.0.2.51' }));
  open.push(other);
  assert.equal((await other.read()).code, 220);
});

test('shutdown closes connections still waiting for their header', async (t) => {
  const { node, logs } = await proxyNode(t, { POSTERN_PROXY_TIMEOUT_MS: '30s' });
  const s = await rawConnect(node.ports.smtpPort);
  s.write('PROXY TCP4 ');
  await sleep(50);
  const closing = readUntilClose(s, 5000);
  await node.smtp.close(1000);
  const r = await closing;
  assert.ok(r.closed && r.bytes.length === 0);
  assert.ok(logs.some((l) => l.reason === 'server shutting down'));
});

/**
 * TLS over `raw` whose first write carries `header` in front of the ClientHello, in one
 * write: the server reads the header and the start of the handshake in one chunk.
 */
async function tlsBehindHeader(raw: Socket, header: Buffer): Promise<TLSSocket> {
  let first = true;
  const pipe = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, done) {
      raw.write(first ? Buffer.concat([header, chunk]) : chunk, done);
      first = false;
    },
    final(done) {
      raw.end();
      done();
    },
  });
  raw.on('data', (d: Buffer) => pipe.push(d));
  raw.on('end', () => pipe.push(null));
  raw.on('close', () => pipe.destroy());
  const secure = tlsConnect({ socket: pipe, rejectUnauthorized: false });
  await once(secure, 'secureConnect');
  return secure;
}

test('the implicit-TLS port: a proxy\'s header comes in clear before the handshake (even in one chunk with it); other clients start TLS at once', async (t) => {
  const { cert, key } = makeCert(t);
  const { node, logs } = await proxyNode(t, { POSTERN_TLS_CERT: cert, POSTERN_TLS_KEY: key, POSTERN_SMTPS_PORT: '0' });
  const smtps = node.ports.smtpsPort!;

  const proxiedTls = new RawClient(await tlsBehindHeader(await rawConnect(smtps), proxyV2({ source: '192.0.2.60', sourcePort: 4465 })));
  t.after(() => proxiedTls.end());
  assert.equal((await proxiedTls.read()).code, 220);
  const viaProxy = await sendThrough(proxiedTls, 'user@local.example');
  assert.match(receivedOf(node, viaProxy.reply!), /^Received: from client\.example \(\[192\.0\.2\.60\]\)$/);
  const stored = node.queue.withBody(/queued as (\S+)/.exec(viaProxy.reply!)![1]!, (b) => b.toString('latin1'));
  assert.match(stored, /with ESMTPS id /);

  // A v1 header written first, then the handshake in its own writes.
  const raw = await rawConnect(smtps);
  raw.write(proxyV1('192.0.2.61'));
  const v1 = tlsConnect({ socket: raw, rejectUnauthorized: false });
  await once(v1, 'secureConnect');
  const v1c = new RawClient(v1);
  t.after(() => v1c.end());
  assert.equal((await v1c.read()).code, 220);

  // From outside the list: TLS at once, no header read.
  const direct = await RawClient.connect(smtps, { tls: true, localAddress: '127.0.0.2' });
  t.after(() => direct.end());
  assert.equal((await direct.read()).code, 220);
  assert.match(receivedOf(node, (await sendThrough(direct, 'user@local.example')).reply!), /\(\[127\.0\.0\.2\]\)$/);

  // The proxy starting TLS without a header: its ClientHello is not a header.
  const bare = await rawConnect(smtps);
  const noHeader = tlsConnect({ socket: bare, rejectUnauthorized: false });
  noHeader.on('error', () => {});
  await new Promise((resolve) => noHeader.on('close', resolve));
  await waitFor('the missing header logged', () => logs.some((l) => l.msg.startsWith('PROXY header refused') && /no PROXY protocol header/.test(String(l.reason))));

  // A header, then no TLS: the handshake fails, no session is made, nothing is answered.
  const plainAfter = await rawConnect(smtps);
  plainAfter.write(Buffer.concat([proxyV1('192.0.2.62'), Buffer.from('EHLO x\r\n')]));
  const refused = await readUntilClose(plainAfter, 5000);
  assert.ok(refused.closed, 'closed');
  assert.ok(!refused.bytes.toString('latin1').includes('220'), 'never greeted in clear');

  assert.deepEqual(
    logs.filter((l) => l.msg === 'connect').map((l) => [l.ip, l.proxy, l.tls]),
    [
      ['192.0.2.60', '127.0.0.1', true],
      ['192.0.2.61', '127.0.0.1', true],
      ['127.0.0.2', undefined, true],
    ],
  );
});

test('AUTH back-off counts the carried address: one client behind the proxy locked out, another through the same proxy logs in', async (t) => {
  const users = join(tmpdir(t), 'users');
  await addUser(users, 'alice', 'right pass');
  const { node } = await proxyNode(t, { POSTERN_AUTH_USERS: users, POSTERN_REQUIRE_TLS_FOR_AUTH: 'false', POSTERN_AUTH_MAX_FAILURES: '2', POSTERN_AUTH_MAX_DELAY_MS: '0', POSTERN_AUTH_USER_MAX_FAILURES: '100' });
  const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
  const auth = async (source: string, password: string): Promise<number> => {
    const c = await proxied(node.ports.smtpPort, proxyV1(source));
    try {
      assert.equal((await c.read()).code, 220);
      assert.equal((await c.cmd('EHLO c')).code, 250);
      return (await c.cmd('AUTH PLAIN ' + b64(`\0alice\0${password}`), 30_000)).code;
    } finally {
      c.end();
    }
  };
  assert.equal(await auth('192.0.2.90', 'guess1'), 535);
  assert.equal(await auth('192.0.2.90', 'guess2'), 535);
  assert.equal(await auth('192.0.2.90', 'right pass'), 454, '192.0.2.90 is locked out');
  assert.equal(await auth('192.0.2.91', 'right pass'), 235, 'another client through the same proxy is not');
});
