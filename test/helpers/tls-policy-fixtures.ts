// Fixtures for the TLS policy tests, all on loopback: an MTA-STS policy server (HTTPS with a
// test CA, mta-sts.<domain> mapped to 127.0.0.1), an MtaSts reading it, SMTP servers with good,
// expired and wrong-name certificates, and a man in the middle that strips STARTTLS.
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import type { TestCa } from './test-ca.js';
import { startScriptedServer, DEFAULT_CAPS, type ScriptedServer } from './scripted-server.js';
import { MtaSts } from '../../src/delivery/mta-sts.js';
import { AddressPolicy } from '../../src/delivery/address-policy.js';
import { SmtpTransport } from '../../src/delivery/smtp-transport.js';
import type { Destination } from '../../src/delivery/types.js';
import type { TlsOutcome } from '../../src/delivery/tls-outcome.js';

export const TIMEOUTS = { connectMs: 2000, greetingMs: 3000, commandMs: 3000, dataInitMs: 3000, dataBlockMs: 3000, finalMs: 5000, tlsMs: 3000 };
export const DOMAIN = 'example.test';
export const MX = 'mx.example.test';

export interface PolicyServer {
  port: number;
  hits: number;
  respond: { status: number; type: string; body: string | Buffer; location?: string };
}

export async function startPolicyServer(t: TestContext, ca: TestCa, body: string): Promise<PolicyServer> {
  const { cert, key } = ca.issue([`mta-sts.${DOMAIN}`]);
  const state: PolicyServer = { port: 0, hits: 0, respond: { status: 200, type: 'text/plain', body } };
  const srv = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
    state.hits++;
    if (req.url !== '/.well-known/mta-sts.txt') {
      res.writeHead(404).end();
      return;
    }
    const r = state.respond;
    res.writeHead(r.status, { 'content-type': r.type, ...(r.location ? { location: r.location } : {}) });
    res.end(r.body);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  state.port = (srv.address() as AddressInfo).port;
  t.after(() => new Promise<void>((resolve) => srv.close(() => resolve())));
  srv.closeAllConnections?.();
  return state;
}

export function stsFor(t: TestContext, ca: TestCa, server: PolicyServer, txt: { id: string | null }, extra: Partial<ConstructorParameters<typeof MtaSts>[0]> = {}): MtaSts {
  const sts = new MtaSts({
    dns: {
      resolveTxt: async (name: string) => {
        assert.equal(name, `_mta-sts.${DOMAIN}`);
        if (txt.id === null) throw Object.assign(new Error('no data'), { code: 'ENODATA' });
        return [[`v=STSv1; id=${txt.id}`], ['some other record']];
      },
    },
    policy: new AddressPolicy({ allowLoopback: true, ownAddresses: [] }),
    origin: (d) => `https://mta-sts.${d}:${server.port}`,
    resolveHost: async (h) => {
      assert.equal(h, `mta-sts.${DOMAIN}`);
      return ['127.0.0.1'];
    },
    ca: [ca.caPem],
    fetchTimeoutMs: 3000,
    ...extra,
  });
  t.after(() => sts.close());
  return sts;
}

export const ENFORCE = `version: STSv1\r\nmode: enforce\r\nmx: ${MX}\r\nmx: *.backup.example.test\r\nmax_age: 86400\r\n`;

export function mxDest(port: number, host = MX): Extract<Destination, { kind: 'smtp' }> {
  return { kind: 'smtp', key: `smtp:${host}:${port}`, hosts: [{ host, port, address: '127.0.0.1' }], tlsPolicy: 'opportunistic', viaMx: true };
}

export function transport(t: TestContext, ca: TestCa, outcomes: TlsOutcome[]): SmtpTransport {
  const tr = new SmtpTransport({ heloName: 'client.test', timeouts: TIMEOUTS, tls: { ca: [ca.caPem] }, tlsOutcomes: { record: (o) => outcomes.push(o) } });
  t.after(() => tr.close());
  return tr;
}

export async function smtpServer(t: TestContext, ca: TestCa, kind: 'good' | 'expired' | 'wrong-name' | 'none', extraCaps: string[] = []): Promise<ScriptedServer> {
  if (kind === 'none') return startScriptedServer(t, { capabilities: DEFAULT_CAPS });
  const names = kind === 'wrong-name' ? ['other.example.net'] : [MX];
  const c = ca.issue(names, { expired: kind === 'expired' });
  return startScriptedServer(t, { capabilities: [...DEFAULT_CAPS, 'STARTTLS', ...extraCaps], tls: { cert: c.cert, key: c.key } });
}

/** A man in the middle: passes bytes both ways but removes the STARTTLS line from EHLO replies. */
export async function startStripper(t: TestContext, target: number): Promise<number> {
  const sockets = new Set<Socket>();
  const srv = createNetServer((client) => {
    const up = netConnect(target, '127.0.0.1');
    sockets.add(client).add(up);
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
    client.pipe(up);
    up.on('data', (b: Buffer) => {
      const s = b.toString('latin1').replace(/250-STARTTLS\r\n/gi, '').replace(/250 STARTTLS\r\n/gi, '250 NOOP\r\n');
      client.write(Buffer.from(s, 'latin1'));
    });
    up.on('end', () => client.end());
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => srv.close(() => resolve()));
  });
  return (srv.address() as AddressInfo).port;
}

