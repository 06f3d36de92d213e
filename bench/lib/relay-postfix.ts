// A private, throw-away Postfix instance as the relay bench's peer: like bench/lib/postfix.ts
// (its own config_directory, queue_directory and data_directory under one temp folder, smtpd
// on one 127.0.0.1 port) but from the templates in bench/peers/postfix-relay/, which relay every
// message to relayhost = [127.0.0.1]:SINK over cached connections (README there). Started with
// `postfix -c DIR start`, stopped with `postfix -c DIR stop` and, should any of its processes
// outlive that, by PID. The system's own instance (/etc/postfix) is never read, started or
// touched.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { POSTFIX, havePostfix, type QueueFiles } from './postfix.js';
import { childrenOf, pidAlive, treeCpuSeconds, waitForPort } from './proc.js';

export { havePostfix };

/** bench/peers/postfix-relay, found from this file whether it runs from build/bench/lib or bench/lib. */
export function relayTemplateDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const cand = join(dir, 'bench', 'peers', 'postfix-relay');
    if (existsSync(join(cand, 'main.cf'))) return cand;
    dir = dirname(dir);
  }
  throw new Error('bench/peers/postfix-relay/main.cf not found above ' + fileURLToPath(import.meta.url));
}

export interface PostfixRelayOptions {
  port: number;
  /** The sink's port on 127.0.0.1 (relayhost). */
  sinkPort: number;
  /** Parallel deliveries to the sink (destination concurrency). */
  outConnections: number;
  /** main.cf settings that replace the template's (or are appended). */
  overrides?: Record<string, string>;
  parent?: string;
}

export interface PostfixRelayInstance {
  readonly root: string;
  readonly configDir: string;
  readonly queueDir: string;
  readonly port: number;
  masterPid(): number | null;
  /** The master and its live children (smtpd, cleanup, qmgr, smtp, ...). */
  pids(): number[];
  /** CPU seconds of the master, its live children and the children it has reaped. */
  cpuSeconds(): number | null;
  queueFiles(): QueueFiles;
  /** The maillog's warning/fatal/panic/error lines (first few). */
  problems(): string[];
  /** maillog lines matching a pattern, counted. */
  countLog(re: RegExp): number;
  stop(): Promise<void>;
  remove(): void;
}

function postfixCmd(configDir: string, ...args: string[]): { ok: boolean; out: string } {
  const env = { ...process.env };
  delete env.MAIL_CONFIG;
  const r = spawnSync(POSTFIX, ['-c', configDir, ...args], { encoding: 'utf8', timeout: 60_000, env });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

function countFiles(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) n += countFiles(join(dir, e.name));
    else if (e.isFile()) n++;
  }
  return n;
}

export async function startPostfixRelay(opts: PostfixRelayOptions): Promise<PostfixRelayInstance> {
  if (!havePostfix()) throw new Error(`${POSTFIX} is not installed`);
  const tpl = relayTemplateDir();
  const root = realpathSync(mkdtempSync(join(opts.parent ?? tmpdir(), 'postern-bench-postfix-relay-')));
  chmodSync(root, 0o755); // the postfix user's daemons must reach the queue below it
  const configDir = join(root, 'etc');
  const queueDir = join(root, 'queue');
  const dataDir = join(root, 'data');
  const maillog = join(root, 'maillog');
  if (resolve(configDir) === '/etc/postfix' || resolve(queueDir) === '/var/spool/postfix') throw new Error('refusing to use the system Postfix instance');
  mkdirSync(configDir, { mode: 0o755 });
  mkdirSync(queueDir, { mode: 0o755 }); // root-owned; `postfix check` makes its subfolders
  const fill = (text: string) =>
    text
      .replaceAll('@CONFIG_DIR@', configDir)
      .replaceAll('@QUEUE_DIR@', queueDir)
      .replaceAll('@DATA_DIR@', dataDir)
      .replaceAll('@ROOT_DIR@', root)
      .replaceAll('@MAILLOG@', maillog)
      .replaceAll('@SINK_PORT@', String(opts.sinkPort))
      .replaceAll('@OUT_CONNS@', String(opts.outConnections))
      .replaceAll('@PORT@', String(opts.port));
  let main = fill(readFileSync(join(tpl, 'main.cf'), 'utf8'));
  // Overrides replace the template's line for the same setting (Postfix warns about a setting
  // given twice), or are appended.
  for (const [k, v] of Object.entries(opts.overrides ?? {})) {
    if (!/^[a-z0-9_]+$/.test(k)) throw new Error(`not a main.cf parameter name: ${k}`);
    const re = new RegExp(`^${k}[ \\t]*=.*$`, 'm');
    const line = `${k} = ${v}  # BENCH_POSTFIX_SET`;
    main = re.test(main) ? main.replace(re, line) : `${main}\n${line}\n`;
  }
  writeFileSync(join(configDir, 'main.cf'), main);
  writeFileSync(join(configDir, 'master.cf'), fill(readFileSync(join(tpl, 'master.cf'), 'utf8')));

  let masterPid: number | null = null;
  const readPid = (): number | null => {
    try {
      const n = Number(readFileSync(join(queueDir, 'pid', 'master.pid'), 'utf8').trim());
      return Number.isInteger(n) && n > 0 ? n : null;
    } catch {
      return null;
    }
  };
  const problems = (): string[] => {
    let text = '';
    try {
      text = readFileSync(maillog, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter((l) => /\b(warning|fatal|panic|error):/.test(l))
      .slice(0, 10);
  };

  const countLog = (re: RegExp): number => {
    try {
      return readFileSync(maillog, 'utf8').split('\n').filter((l) => re.test(l)).length;
    } catch {
      return 0;
    }
  };

  const inst: PostfixRelayInstance = {
    root,
    configDir,
    queueDir,
    port: opts.port,
    masterPid: () => masterPid,
    pids: () => (masterPid !== null && pidAlive(masterPid) ? [masterPid, ...childrenOf(masterPid)] : []),
    cpuSeconds: () => (masterPid !== null ? treeCpuSeconds(masterPid, true) : null),
    queueFiles: () => {
      const q = (d: string) => countFiles(join(queueDir, d));
      const r = { hold: q('hold'), incoming: q('incoming'), active: q('active'), deferred: q('deferred'), maildrop: q('maildrop') };
      return { ...r, total: r.hold + r.incoming + r.active + r.deferred + r.maildrop };
    },
    problems,
    countLog,
    async stop() {
      const pids = inst.pids();
      postfixCmd(configDir, 'stop');
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && pids.some(pidAlive)) await new Promise((r) => setTimeout(r, 100));
      for (const p of pids) {
        if (pidAlive(p)) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone meanwhile */
          }
        }
      }
    },
    remove() {
      rmSync(root, { recursive: true, force: true });
    },
  };

  const check = postfixCmd(configDir, 'check');
  const start = postfixCmd(configDir, 'start');
  if (!start.ok) {
    const why = `postfix -c ${configDir} start failed: ${start.out}\n${check.out}\n${problems().join('\n')}`;
    inst.remove();
    throw new Error(why);
  }
  try {
    await waitForPort(opts.port, 20_000);
    const deadline = Date.now() + 5_000;
    while ((masterPid = readPid()) === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (masterPid === null) throw new Error('no master.pid');
  } catch (err) {
    await inst.stop();
    const why = `${(err as Error).message}\n${problems().join('\n')}`;
    inst.remove();
    throw new Error(`private postfix did not come up: ${why}`);
  }
  return inst;
}
