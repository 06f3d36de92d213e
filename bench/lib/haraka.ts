// A private Haraka for the accept benchmark: `haraka -i` into a temp folder, then the templates of
// bench/peers/haraka (config/ and plugins/) copied over it — listen on 127.0.0.1:PORT, relaying
// granted to loopback, outbound delivery disabled — so that every accepted message is a file in
// the instance's queue/ (Haraka writes it, fsyncs it and renames it into place before the 250).
// Haraka and its dependencies come from bench/.peers (scripts/install-peers.sh). One node
// process, started as our child and ended by its PID.
// Relay mode (opts.relay, the relay and fanout scenarios): bench/peers/haraka/relay/config is
// copied over that — outbound delivery on, concurrency_max = the outbound connection budget, and
// plugins/bench_sink_mx.js routing every delivery to the sink on 127.0.0.1:relay.sinkPort.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pidAlive, waitForPort } from './proc.js';

/** bench/<sub> found from this file, whether it runs from build/bench/lib or bench/lib. */
export function benchDir(sub: string, marker: string): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const cand = join(dir, 'bench', sub);
    if (existsSync(join(cand, marker))) return cand;
    dir = dirname(dir);
  }
  return null;
}

/** bench/.peers/node_modules/<pkg>, or null when scripts/install-peers.sh has not put it there. */
export function peerPackage(pkg: string): string | null {
  return benchDir(join('.peers', 'node_modules', pkg), 'package.json');
}

export function haraka(): string | null {
  const dir = peerPackage('Haraka');
  return dir && existsSync(join(dir, 'bin', 'haraka')) ? join(dir, 'bin', 'haraka') : null;
}

export function haveHaraka(): boolean {
  return haraka() !== null && benchDir(join('peers', 'haraka'), join('config', 'plugins')) !== null;
}

export interface Haraka {
  readonly pid: number;
  readonly dir: string;
  /** Messages in the queue folder (finished files; the dot-prefixed temporaries are not counted). */
  queueFiles(): number;
  problems(): string[];
  stop(): Promise<{ killed: boolean }>;
  remove(): void;
}

const PROBLEM = /\[(WARN|ERROR|CRIT|ALERT|EMERG)\]|Error|error:/;
/** Haraka loads its inbound TLS options at start whatever the plugins: with no key and cert in the
 * instance (no STARTTLS here) it logs these two errors, which say nothing about the run. */
const HARMLESS = /tls (key|cert) \S+ could not be loaded/;

export interface HarakaOptions {
  port: number;
  /** Relay mode: deliver every message to the sink on 127.0.0.1:sinkPort, at most `concurrency`
   * deliveries at once (outbound.ini concurrency_max). Without it outbound delivery is disabled. */
  relay?: { sinkPort: number; concurrency: number };
}

export async function startHaraka(opts: HarakaOptions): Promise<Haraka> {
  const bin = haraka();
  const templates = benchDir(join('peers', 'haraka'), join('config', 'plugins'));
  if (!bin || !templates) throw new Error('Haraka is not installed in bench/.peers: run scripts/install-peers.sh');
  const dir = mkdtempSync(join(tmpdir(), 'postern-bench-haraka-'));
  const inst = join(dir, 'haraka');
  const init = spawnSync(process.execPath, [bin, '-i', inst], { encoding: 'utf8', timeout: 30_000 });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`haraka -i failed: ${(init.stderr || init.stdout).slice(-500)}`);
  }
  cpSync(join(templates, 'config'), join(inst, 'config'), { recursive: true });
  cpSync(join(templates, 'plugins'), join(inst, 'plugins'), { recursive: true });
  const fill = (file: string, vars: Record<string, string>): void => {
    let text = readFileSync(file, 'utf8');
    for (const [k, v] of Object.entries(vars)) text = text.replaceAll(`@${k}@`, v);
    writeFileSync(file, text);
  };
  fill(join(inst, 'config', 'smtp.ini'), { PORT: String(opts.port) });
  if (opts.relay) {
    cpSync(join(templates, 'relay', 'config'), join(inst, 'config'), { recursive: true });
    fill(join(inst, 'config', 'outbound.ini'), { CONCURRENCY: String(opts.relay.concurrency) });
    fill(join(inst, 'config', 'bench_sink_mx.ini'), { SINK_PORT: String(opts.relay.sinkPort) });
  }
  const queue = join(inst, 'queue');

  const child: ChildProcess = spawn(process.execPath, [bin, '-c', inst], { cwd: inst, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, HARAKA: inst } });
  const problems: string[] = [];
  let tail = '';
  const onData = (d: string): void => {
    tail = (tail + d).slice(-4000);
    for (const line of d.split('\n')) if (line && PROBLEM.test(line) && !HARMLESS.test(line) && problems.length < 50) problems.push(line.slice(0, 300));
  };
  child.stdout!.setEncoding('utf8').on('data', onData);
  child.stderr!.setEncoding('utf8').on('data', onData);
  try {
    await waitForPort(opts.port, 30_000, () => child.exitCode === null);
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`Haraka did not listen on ${opts.port}: ${(err as Error).message}: ${tail.slice(-800)}`, { cause: err });
  }
  const pid = child.pid!;
  const exited = new Promise<void>((r) => (child.exitCode !== null ? r() : child.once('exit', () => r())));
  return {
    pid,
    dir: inst,
    queueFiles: () => (existsSync(queue) ? readdirSync(queue).filter((f) => !f.startsWith('.') && !f.startsWith('error.')).length : 0),
    problems: () => problems.slice(),
    async stop() {
      let killed = false;
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (pidAlive(pid)) {
          killed = true;
          process.kill(pid, 'SIGKILL');
        }
      }, 15_000);
      await exited;
      clearTimeout(timer);
      return { killed };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
