// A private, throw-away Postfix instance for the peer figure: its own config_directory,
// queue_directory and data_directory under one temp folder, smtpd on one 127.0.0.1 port, mail
// accepted into the hold queue and never delivered (bench/peers/postfix/README.md explains the
// configuration). Started with `postfix -c DIR start`, stopped with `postfix -c DIR stop` and,
// should its master outlive that, by PID. The system's own instance (/etc/postfix) is never
// read, started or touched.
//
// The same code starts the relay bench's instance (bench/lib/relay-postfix.ts: other templates,
// more @NAME@ fields) and lays out the interop tests' instances (test/helpers/postfix.ts).
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childrenOf, pidAlive, treeCpuSeconds, waitForPort } from './proc.js';

export const POSTFIX = '/usr/sbin/postfix';

export function havePostfix(): boolean {
  return existsSync(POSTFIX) && existsSync('/usr/lib/postfix/sbin/master');
}

/** bench/peers/<name> (a folder holding main.cf and master.cf templates), found from this file
 * whether it runs from build/bench/lib or bench/lib. */
export function peerTemplateDir(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const cand = join(dir, 'bench', 'peers', name);
    if (existsSync(join(cand, 'main.cf'))) return cand;
    dir = dirname(dir);
  }
  throw new Error(`bench/peers/${name}/main.cf not found above ` + fileURLToPath(import.meta.url));
}

/** bench/peers/postfix, the accept-only instance's templates. */
export function templateDir(): string {
  return peerTemplateDir('postfix');
}

export interface PostfixOptions {
  port: number;
  /** main.cf settings appended after the template's (later lines win), e.g. { in_flow_delay: '1s' }. */
  overrides?: Record<string, string>;
  /** Parent of the instance's temp folder (default: the OS temp dir, same file system as postern's). */
  parent?: string;
  /** The templates' folder (main.cf, master.cf) under bench/peers: default 'postfix'. */
  template?: string;
  /** Template fields besides @CONFIG_DIR@, @QUEUE_DIR@, @DATA_DIR@, @ROOT_DIR@, @MAILLOG@ and
   * @PORT@: { SINK_PORT: 2525 } fills in @SINK_PORT@. */
  vars?: Record<string, string | number>;
  /** Name prefix of the temp folder (default 'postern-bench-postfix-'). */
  prefix?: string;
}

export interface QueueFiles {
  hold: number;
  incoming: number;
  active: number;
  deferred: number;
  maildrop: number;
  total: number;
}

export interface PostfixInstance {
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
  /** The maillog's warning/fatal/panic/error lines (first few), for the report. */
  problems(): string[];
  /** maillog lines matching a pattern, counted. */
  countLog(re: RegExp): number;
  stop(): Promise<void>;
  /** Remove the temp folder (after stop). */
  remove(): void;
}

/** `postfix -c configDir ARGS...`, with MAIL_CONFIG dropped from the environment. */
export function postfixCmd(configDir: string, ...args: string[]): { ok: boolean; out: string } {
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

export interface InstanceDirs {
  root: string;
  configDir: string;
  queueDir: string;
  dataDir: string;
  maillog: string;
}

/**
 * A fresh temp folder `<parent>/<prefix>XXXXXX` (mode 755: the postfix user's daemons must reach
 * the queue below it) with etc/ (config_directory) and queue/ (queue_directory, root-owned;
 * `postfix check`/`start` makes its subfolders) made, data/ and maillog named.
 */
export function makeInstanceDirs(prefix: string, parent: string = tmpdir()): InstanceDirs {
  const root = realpathSync(mkdtempSync(join(parent, prefix)));
  chmodSync(root, 0o755);
  const dirs = { root, configDir: join(root, 'etc'), queueDir: join(root, 'queue'), dataDir: join(root, 'data'), maillog: join(root, 'maillog') };
  if (resolve(dirs.configDir) === '/etc/postfix' || resolve(dirs.queueDir) === '/var/spool/postfix') throw new Error('refusing to use the system Postfix instance');
  mkdirSync(dirs.configDir, { mode: 0o755 });
  mkdirSync(dirs.queueDir, { mode: 0o755 });
  return dirs;
}

function readMasterPid(queueDir: string): number | null {
  try {
    const n = Number(readFileSync(join(queueDir, 'pid', 'master.pid'), 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** Wait for smtpd's port to answer, then for the master's PID file; the master's PID. */
export async function waitForMaster(port: number, queueDir: string): Promise<number> {
  await waitForPort(port, 20_000);
  const deadline = Date.now() + 5_000;
  let pid: number | null;
  while ((pid = readMasterPid(queueDir)) === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (pid === null) throw new Error('no master.pid');
  return pid;
}

/**
 * Start a private instance from bench/peers/<opts.template> (default postfix): its main.cf
 * and master.cf with the @NAME@ fields filled in, `opts.overrides` replacing (or appended to)
 * main.cf settings.
 */
export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  if (!havePostfix()) throw new Error(`${POSTFIX} is not installed`);
  const tpl = peerTemplateDir(opts.template ?? 'postfix');
  const { root, configDir, queueDir, dataDir, maillog } = makeInstanceDirs(opts.prefix ?? 'postern-bench-postfix-', opts.parent);
  // Built-in fields first, then the caller's, then @PORT@ (the order the fields were always filled in).
  const fields: Array<[string, string]> = [
    ['CONFIG_DIR', configDir],
    ['QUEUE_DIR', queueDir],
    ['DATA_DIR', dataDir],
    ['ROOT_DIR', root],
    ['MAILLOG', maillog],
    ...Object.entries(opts.vars ?? {}).map(([k, v]): [string, string] => [k, String(v)]),
    ['PORT', String(opts.port)],
  ];
  const fill = (text: string) => fields.reduce((t, [k, v]) => t.replaceAll(`@${k}@`, v), text);
  let main = fill(readFileSync(join(tpl, 'main.cf'), 'utf8'));
  // Overrides replace the template's line for the same setting (Postfix warns about a setting
  // given twice), or are appended.
  for (const [k, v] of Object.entries(opts.overrides ?? {})) {
    if (!/^[a-z0-9_]+$/.test(k)) throw new Error(`not a main.cf parameter name: ${k}`);
    const re = new RegExp(`^${k}[ \\t]*=.*$`, 'm');
    // main.cf allows comments only on lines of their own ("k = v  # x" makes # x part of the value).
    const line = `# BENCH_POSTFIX_SET\n${k} = ${v}`;
    main = re.test(main) ? main.replace(re, line) : `${main}\n${line}\n`;
  }
  writeFileSync(join(configDir, 'main.cf'), main);
  writeFileSync(join(configDir, 'master.cf'), fill(readFileSync(join(tpl, 'master.cf'), 'utf8')));

  let masterPid: number | null = null;
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

  const inst: PostfixInstance = {
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
    masterPid = await waitForMaster(opts.port, queueDir);
  } catch (err) {
    await inst.stop();
    const why = `${(err as Error).message}\n${problems().join('\n')}`;
    inst.remove();
    throw new Error(`private postfix did not come up: ${why}`, { cause: err });
  }
  return inst;
}
