// Aborted TLS handshakes and shutdown: clients that refuse the certificate, send garbage or half
// a ClientHello, or connect and say nothing, on the implicit-TLS port and on STARTTLS; the
// node's close() must still end within the shutdown timeout (plus a margin), and a handshake
// held open is cut at POSTERN_TLS_HANDSHAKE_TIMEOUT_MS.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { makeCert, startTestNode } from '../helpers/node.js';
import { makeTestCa } from '../helpers/cert-authority.js';
import type { PosternNode } from '../../src/main.js';

const SHUTDOWN_MS = 1000;
const MARGIN_MS = 1500;

/** A TLS 1.2 ClientHello's first bytes: a record header announcing more than is sent. */
const HALF_HELLO = Buffer.from('16030100c8010000c40303' + '00'.repeat(20), 'hex');

async function node(t: TestContext, env: Record<string, string> = {}, ca = makeTestCa(t)): Promise<PosternNode> {
  const leaf = ca.leaf('mx.test.example');
  const n = await startTestNode(t, {
    POSTERN_TLS_CERT: leaf.cert,
    POSTERN_TLS_KEY: leaf.key,
    POSTERN_SMTPS_PORT: '0',
    POSTERN_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_MS),
    ...env,
  });
  return n;
}

function raw(port: number, localAddress?: string): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
  s.on('error', () => {});
  return once(s, 'connect').then(() => s);
}

/** A client that refuses the node's certificate (a CA it does not trust); resolves once it gave up. */
async function refuse(port: number, plain: boolean, otherCa: string, tlsOpts: { maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<void> {
  let socket: Socket | undefined;
  if (plain) socket = await starttlsReady(port);
  const s = tlsConnect({ host: '127.0.0.1', port, servername: 'mx.test.example', rejectUnauthorized: true, ca: otherCa, ...tlsOpts, ...(socket ? { socket } : {}) });
  await new Promise<void>((resolve) => {
    s.on('error', () => resolve());
    s.on('secureConnect', () => resolve());
  });
  s.destroy();
}

/** A plain connection that said EHLO and STARTTLS and read the 220 to go ahead. */
async function starttlsReady(port: number): Promise<Socket> {
  const s = await raw(port);
  let buf = '';
  const wait = (re: RegExp) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (re.test(buf)) {
          s.removeListener('data', onData);
          buf = '';
          resolve();
        }
      };
      const onData = (d: Buffer) => {
        buf += d.toString('latin1');
        check();
      };
      s.on('data', onData);
      s.once('close', () => reject(new Error(`closed waiting for ${re}: ${buf}`)));
      check();
    });
  await wait(/^220 /m);
  s.write('EHLO c.test\r\n');
  await wait(/^250 /m);
  s.write('STARTTLS\r\n');
  await wait(/^220 /m);
  return s;
}

/** Clients that leave a handshake unfinished on `port`, every way listed above; returns the sockets still held. */
async function abortHandshakes(port: number, plain: boolean, otherCa: string): Promise<Socket[]> {
  const held: Socket[] = [];
  const open = () => (plain ? starttlsReady(port) : raw(port));
  // Refuse the certificate, under TLS 1.3 and 1.2.
  await refuse(port, plain, otherCa);
  await refuse(port, plain, otherCa, { maxVersion: 'TLSv1.2' });
  // Garbage instead of a ClientHello, then close.
  const g = await open();
  g.write('GET / HTTP/1.0\r\n\r\n');
  g.end();
  // Half a ClientHello, then close.
  const h = await open();
  h.write(HALF_HELLO);
  h.end();
  // Half a ClientHello, then a reset.
  const r = await open();
  r.write(HALF_HELLO);
  r.resetAndDestroy();
  // Connect and say nothing (held open); half a ClientHello and hold.
  held.push(await open());
  const hh = await open();
  hh.write(HALF_HELLO);
  held.push(hh);
  await new Promise((r) => setTimeout(r, 200));
  return held;
}

async function closeWithin(t: TestContext, n: PosternNode, held: Socket[]): Promise<void> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(r, SHUTDOWN_MS + MARGIN_MS, 'late')));
  const done = await Promise.race([n.close().then(() => 'closed' as const), late]);
  clearTimeout(timer);
  const took = Date.now() - started;
  assert.equal(done, 'closed', `close() still running after ${took} ms (shutdown timeout ${SHUTDOWN_MS} ms)`);
  assert.ok(took < SHUTDOWN_MS + MARGIN_MS, `close() took ${took} ms (shutdown timeout ${SHUTDOWN_MS} ms)`);
  // Nothing left open on the node's side: every held client sees its connection closed.
  await Promise.all(held.map((s) => (s.destroyed ? null : Promise.race([once(s, 'close'), new Promise((_, rej) => setTimeout(rej, 1000, new Error('client socket still open after close()')))]))));
  t.diagnostic(`close() took ${took} ms`);
}

for (const where of ['implicit', 'starttls'] as const) {
  test(`${where}: aborted TLS handshakes do not hold close() past the shutdown timeout`, async (t) => {
    const n = await node(t);
    const otherCa = makeTestCa(t).pem; // a CA that did not sign the node's certificate
    const plain = where === 'starttls';
    const port = plain ? n.ports.smtpPort : n.ports.smtpsPort!;
    const held = await abortHandshakes(port, plain, otherCa);
    await closeWithin(t, n, held);
  });

  test(`${where}: a handshake held open is cut at POSTERN_TLS_HANDSHAKE_TIMEOUT_MS`, async (t) => {
    const n = await node(t, { POSTERN_TLS_HANDSHAKE_TIMEOUT_MS: '500' });
    const plain = where === 'starttls';
    const port = plain ? n.ports.smtpPort : n.ports.smtpsPort!;
    const silent = plain ? await starttlsReady(port) : await raw(port);
    const half = plain ? await starttlsReady(port) : await raw(port);
    half.write(HALF_HELLO);
    const started = Date.now();
    await Promise.all([silent, half].map((s) => Promise.race([once(s, 'close'), new Promise((_, rej) => setTimeout(rej, 3000, new Error('handshake not cut')))])));
    const took = Date.now() - started;
    assert.ok(took < 500 + MARGIN_MS, `cut after ${took} ms`);
  });
}

/** True once the node closed `s` within `ms`; false when it is still open then. */
function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed || s.readableEnded) return Promise.resolve(true);
  return Promise.race([once(s, 'close').then(() => true), new Promise<boolean>((r) => setTimeout(r, ms, false))]);
}

/** A client on the implicit port that completes its handshake and reads the greeting. */
async function greeted(port: number, localAddress: string, ca: string): Promise<string> {
  const s = tlsConnect({ socket: await raw(port, localAddress), servername: 'mx.test.example', ca });
  s.on('error', () => {});
  try {
    const [d] = (await Promise.race([once(s, 'data'), new Promise((_, rej) => setTimeout(rej, 3000, new Error('no greeting')))])) as [Buffer];
    return d.toString('latin1');
  } finally {
    s.destroy();
  }
}

for (const proxied of [false, true]) {
  test(`implicit TLS${proxied ? ' (listener for POSTERN_PROXY_TRUSTED)' : ''}: connections still in their handshake count against the per-client and total limits`, async (t) => {
    const ca = makeTestCa(t);
    // Loopback untrusted (per-client limit applies); with proxies, trusted to send a header is
    // another network, so these connections are clients of the plain-TCP implicit listener.
    const n = await node(t, { POSTERN_TRUSTED_NETWORKS: '192.0.2.0/24', POSTERN_MAX_CONNECTIONS_PER_IP: '3', POSTERN_MAX_CONNECTIONS: '6', ...(proxied ? { POSTERN_PROXY_TRUSTED: '192.0.2.1/32' } : {}) }, ca);
    const port = n.ports.smtpsPort!;
    const silent: Socket[] = [];
    t.after(() => silent.forEach((s) => s.destroy()));
    for (let i = 0; i < 8; i++) silent.push(await raw(port, '127.0.0.1'));
    const closed = await Promise.all(silent.map((s) => closedWithin(s, 1000)));
    assert.deepEqual(closed, [false, false, false, true, true, true, true, true], 'three silent handshakes held from one address, the rest closed');
    // Another address still gets in while the total has room; the held slots add to it.
    assert.match(await greeted(port, '127.0.0.2', ca.pem), /^220 /);
    for (let i = 0; i < 3; i++) silent.push(await raw(port, '127.0.0.3'));
    assert.deepEqual(await Promise.all(silent.slice(8).map((s) => closedWithin(s, 500))), [false, false, false]);
    // 6 handshakes held: the total is reached, a newcomer from a fourth address is closed.
    const fourth = await raw(port, '127.0.0.4');
    assert.equal(await closedWithin(fourth, 1000), true, 'past the total limit a handshake is refused');
    // Held handshakes that end give their slots back. (A reset: with allowHalfOpen a FIN before
    // the handshake is only noticed at the handshake deadline, which also gives the slot back.)
    for (const s of silent.slice(0, 3)) s.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 200));
    assert.match(await greeted(port, '127.0.0.1', ca.pem), /^220 /, 'a slot given back is usable');
  });
}

test('a self-signed certificate refused by the client: close() is prompt', async (t) => {
  const cert = makeCert(t);
  const n = await startTestNode(t, { POSTERN_TLS_CERT: cert.cert, POSTERN_TLS_KEY: cert.key, POSTERN_SMTPS_PORT: '0', POSTERN_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_MS) });
  for (let i = 0; i < 3; i++) {
    const s = tlsConnect({ host: '127.0.0.1', port: n.ports.smtpsPort!, servername: 'mx.test.example', rejectUnauthorized: true });
    await new Promise<void>((resolve) => {
      s.on('error', () => resolve());
      s.on('secureConnect', () => resolve());
    });
    s.destroy();
  }
  await closeWithin(t, n, []);
});
