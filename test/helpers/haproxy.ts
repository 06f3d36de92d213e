// A private HAProxy (Debian's haproxy 2.6) for interop tests: a config written to a temp dir,
// TCP mode on free loopback ports, a backend of postern nodes (and one of their implicit-TLS
// ports, TLS passed through, when they have one) with a PROXY header
// (send-proxy or send-proxy-v2) and HTTP health checks against each node's GET /ready, one
// thread, in the foreground (-db), stopped by its PID in t.after. No stats page, no socket.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tmpdir } from './tmpdir.js';

export const HAPROXY = '/usr/sbin/haproxy';

/** Why the HAProxy tests cannot run here, or false. In CI (.ci/run installs it) they never skip. */
export function haproxySkip(): string | false {
  if (process.env.CI) return false;
  return existsSync(HAPROXY) ? false : `${HAPROXY} is not installed (Debian package haproxy; .ci/run installs it)`;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface HaproxyBackend {
  smtpPort: number;
  /** The node's implicit-TLS port: HAProxy gets a second frontend (TCP, TLS passed through) for them. */
  smtpsPort?: number | null;
  httpPort: number;
}

export interface Haproxy {
  port: number;
  /** The implicit-TLS frontend; null when the backends have no smtpsPort. */
  tlsPort: number | null;
  pid: number;
  /** What HAProxy wrote on stdout and stderr (its alerts and warnings). */
  output(): string;
}

function backend(name: string, backends: HaproxyBackend[], port: (b: HaproxyBackend) => number, mode: string): string[] {
  return [
    `backend ${name}`,
    '  balance roundrobin',
    '  option httpchk GET /ready',
    '  http-check expect status 200',
    ...backends.map((b, i) => `  server node${i + 1} 127.0.0.1:${port(b)} ${mode} check port ${b.httpPort} inter 200ms rise 1 fall 1`),
    '',
  ];
}

/** The haproxy.cfg for `backends`, each server sent `mode` ('send-proxy' or 'send-proxy-v2'). */
export function haproxyConfig(port: number, backends: HaproxyBackend[], mode: 'send-proxy' | 'send-proxy-v2', tlsPort: number | null = null): string {
  return [
    'global',
    '  nbthread 1',
    '  log stderr format raw local0 notice',
    '',
    'defaults',
    '  mode tcp',
    '  log global',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    '  timeout check 2s',
    '',
    'frontend smtp_in',
    `  bind 127.0.0.1:${port}`,
    '  default_backend postern',
    '',
    ...backend('postern', backends, (b) => b.smtpPort, mode),
    ...(tlsPort === null ? [] : ['frontend smtps_in', `  bind 127.0.0.1:${tlsPort}`, '  default_backend postern_tls', '', ...backend('postern_tls', backends, (b) => b.smtpsPort!, mode)]),
  ].join('\n');
}

/** Start HAProxy in front of `backends`; resolves once its frontend accepts connections. */
export async function startHaproxy(t: TestContext, backends: HaproxyBackend[], mode: 'send-proxy' | 'send-proxy-v2'): Promise<Haproxy> {
  const dir = tmpdir(t, 'postern-haproxy-');
  const port = await freePort();
  const tlsPort = backends.every((b) => typeof b.smtpsPort === 'number') ? await freePort() : null;
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(cfg, haproxyConfig(port, backends, mode, tlsPort));
  let out = '';
  const child: ChildProcess = spawn(HAPROXY, ['-f', cfg, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  const pid = child.pid!;
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(pid, 'SIGTERM');
    const timer = setTimeout(() => process.kill(pid, 'SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited with ${child.exitCode}: ${out}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) throw new Error(`haproxy did not listen on ${port}: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, tlsPort, pid, output: () => out };
}
