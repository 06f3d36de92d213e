// A takeover without systemd, as nginx's binary upgrade: the running node starts the new
// version of itself (the same command, arguments and environment) handing it its listening
// sockets as LISTEN_FDS (listen-fds.ts), waits for its "ready" on one more inherited fd, a
// socket pair, then drains and exits. The successor reads the same socket pair's end-of-file as
// "the node replaced has exited" and only then starts delivery. docs/operations.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { Socket } from 'node:net';
import { PosternError } from '../errors.js';
import { LISTEN_FDS_START, type ListenerName } from './listen-fds.js';

/** The variable naming the socket-pair fd of a takeover; read and removed with the LISTEN_* ones. */
export const TAKEOVER_FD_VAR = 'LISTEN_TAKEOVER_FD';
const READY = 'ready\n';

export interface SuccessorOptions {
  fds: ReadonlyMap<ListenerName, number>;
  /** How long the successor may take to say it is ready. */
  readyTimeoutMs: number;
  /** The command to run (default: this process's: node, its flags, the script and its arguments). */
  command?: { file: string; args: string[] };
  env?: NodeJS.ProcessEnv;
}

export interface Successor {
  readonly pid: number;
  readonly child: ChildProcess;
}

/**
 * Start the successor and resolve once it is ready (listening on the sockets handed over).
 * On a failure (it cannot start, exits, or is not ready in time) it is stopped, and the
 * promise rejects (PST_ERR_TAKEOVER) only after it has exited: the caller then carries on
 * alone, sure no other process uses the queue.
 */
export async function startSuccessor(o: SuccessorOptions): Promise<Successor> {
  const names = [...o.fds.keys()];
  const pairFd = LISTEN_FDS_START + names.length;
  const command = o.command ?? { file: process.execPath, args: [...process.execArgv, ...process.argv.slice(1)] };
  const env: NodeJS.ProcessEnv = { ...(o.env ?? process.env), LISTEN_FDS: String(names.length), LISTEN_FDNAMES: names.join(':'), [TAKEOVER_FD_VAR]: String(pairFd) };
  delete env.LISTEN_PID;
  // LISTEN_PID must be the new process's own pid, known only once it exists: as systemd sets
  // it between fork and exec, a shell sets it to its $$ and execs the command in its place.
  const child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'postern-takeover', command.file, ...command.args], {
    env,
    cwd: process.cwd(),
    stdio: ['inherit', 'inherit', 'inherit', ...names.map((n) => o.fds.get(n)!), 'pipe'],
  });
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal === null ? `exit status ${code}` : `signal ${signal}`));
    child.once('error', (err) => resolve(err.message));
  });
  const pair = child.stdio[pairFd] as Socket | null;
  let timer: NodeJS.Timeout | undefined;
  const outcome = await new Promise<string | null>((resolve) => {
    timer = setTimeout(() => resolve(`not ready within ${o.readyTimeoutMs} ms`), o.readyTimeoutMs);
    void exited.then((why) => resolve(`it exited before it was ready (${why})`));
    if (pair === null) return resolve('no socket pair to it');
    let got = '';
    pair.setEncoding('utf8');
    pair.on('error', () => {});
    pair.on('data', (d: string) => {
      got = (got + d).slice(0, READY.length);
      if (got === READY) resolve(null);
    });
  });
  clearTimeout(timer);
  if (outcome === null && child.pid !== undefined) {
    // The pair stays open (not read any more) until this process exits: its end-of-file tells
    // the successor so.
    pair!.pause();
    return { pid: child.pid, child };
  }
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    child.kill('SIGTERM');
    const force = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(force);
  }
  pair?.destroy();
  throw new PosternError('PST_ERR_TAKEOVER', `the new process did not take over: ${outcome ?? 'no pid'}`);
}

/**
 * In the successor: take the socket pair named by LISTEN_TAKEOVER_FD (removing the variable),
 * or null when this process was not started by a takeover. `ready()` tells the node replaced;
 * `replacedExited` settles at the pair's end-of-file, when that node has exited (however).
 */
export function takeTakeoverPair(env: NodeJS.ProcessEnv): { ready(): void; replacedExited: Promise<void> } | null {
  const raw = env[TAKEOVER_FD_VAR];
  delete env[TAKEOVER_FD_VAR];
  if (raw === undefined) return null;
  if (!/^[0-9]{1,3}$/.test(raw) || Number(raw) < LISTEN_FDS_START) {
    throw new PosternError('PST_ERR_LISTEN_FDS', `${TAKEOVER_FD_VAR}=${JSON.stringify(raw.slice(0, 20))} is not an inherited fd`);
  }
  const pair = new Socket({ fd: Number(raw), readable: true, writable: true });
  const replacedExited = new Promise<void>((resolve) => pair.once('close', () => resolve()));
  pair.on('error', () => {}); // a reset is an end as good as any: 'close' follows
  pair.resume(); // nothing is expected but the end
  pair.unref();
  return {
    ready() {
      pair.write(READY);
    },
    replacedExited,
  };
}
