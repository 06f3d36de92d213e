// Linux /proc and /sys readings for the accept benchmark: memory (VmHWM, PSS), CPU time of a
// set of processes, the machine's CPU busy share, the disk's completed flush requests (what
// fsync/fdatasync turn into on the device), free loopback ports, and an optional strace count
// of sync system calls. Every reader returns null where the kernel doesn't offer the figure.
import { readFileSync, readdirSync, readlinkSync, statSync, existsSync, realpathSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

const PAGE = 4096;
const HZ = 100; // USER_HZ on Linux

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** A field of /proc/PID/status in KiB (VmHWM, VmRSS, ...), or null. */
export function statusKiB(pid: number, field: string): number | null {
  const s = readText(`/proc/${pid}/status`);
  const m = s?.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : null;
}

/** Proportional set size in KiB (shared pages split between their users), or null. */
export function pssKiB(pid: number): number | null {
  const s = readText(`/proc/${pid}/smaps_rollup`);
  const m = s?.match(/^Pss:\s+(\d+) kB/m);
  if (m) return Number(m[1]);
  const rss = statusKiB(pid, 'VmRSS');
  return rss;
}

interface ProcStat {
  ppid: number;
  /** utime + stime, seconds. */
  cpu: number;
  /** cutime + cstime (reaped children), seconds. */
  childCpu: number;
  rssKiB: number;
}

export function procStat(pid: number): ProcStat | null {
  const s = readText(`/proc/${pid}/stat`);
  if (s === null) return null;
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): ppid = field 4, utime 14, stime 15, cutime 16, cstime 17, rss 24.
  return {
    ppid: Number(f[1]),
    cpu: (Number(f[11]) + Number(f[12])) / HZ,
    childCpu: (Number(f[13]) + Number(f[14])) / HZ,
    rssKiB: (Number(f[21]) * PAGE) / 1024,
  };
}

/** The PIDs whose parent is ppid (one level). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = procStat(Number(name));
    if (st && st.ppid === ppid) out.push(Number(name));
  }
  return out;
}

/** CPU seconds used so far by a process and (optionally) its children, live and reaped. */
export function treeCpuSeconds(pid: number, withChildren: boolean): number | null {
  const st = procStat(pid);
  if (!st) return null;
  let cpu = st.cpu;
  if (withChildren) {
    cpu += st.childCpu;
    for (const c of childrenOf(pid)) cpu += procStat(c)?.cpu ?? 0;
  }
  return cpu;
}

/**
 * CPU seconds of a process's main thread alone (/proc/PID/task/PID/stat): with the process
 * total, the split between the event loop and every other thread (LMDB's writer on libuv's
 * pool, the filter workers, GC helpers) — whether a node uses its second core.
 */
export function mainThreadCpuSeconds(pid: number): number | null {
  const s = readText(`/proc/${pid}/task/${pid}/stat`);
  if (s === null) return null;
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / HZ;
}

/** CPU seconds of this process plus its reaped children (e.g. an smtp-source that has exited). */
export function selfAndReapedCpuSeconds(): number {
  const st = procStat(process.pid);
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6 + (st?.childCpu ?? 0);
}

/** Machine-wide jiffies: busy and total, from the first line of /proc/stat. */
export function machineCpu(): { busy: number; total: number; hz: number } | null {
  const s = readText('/proc/stat');
  const line = s?.split('\n')[0];
  if (!line?.startsWith('cpu ')) return null;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
  return { busy: total - idle, total, hz: HZ };
}

/** The block device (/sys/dev/block/M:m) holding a path, for its stat file; null if unknown. */
export function blockDeviceOf(path: string): string | null {
  try {
    const dev = statSync(path).dev;
    const major = Math.floor(dev / 256) & 0xfff;
    const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    const sys = `/sys/dev/block/${major}:${minor}`;
    if (!existsSync(sys)) return null;
    // A partition's stat is its own; flushes are counted on the whole disk, so prefer the parent.
    const real = realpathSync(sys);
    const parentStat = real.replace(/\/[^/]+$/, '/stat');
    if (existsSync(`${real}/partition`) && existsSync(parentStat)) return parentStat;
    return `${real}/stat`;
  } catch {
    return null;
  }
}

/** Completed flush requests of a block device (field 16 of its stat; kernels >= 5.5), or null. */
export function deviceFlushes(statFile: string | null): number | null {
  if (statFile === null) return null;
  const s = readText(statFile);
  if (s === null) return null;
  const f = s.trim().split(/\s+/).map(Number);
  return f.length >= 17 ? f[15]! : null;
}

/** Sectors written by a block device (field 7 of its stat), or null. */
export function deviceSectorsWritten(statFile: string | null): number | null {
  if (statFile === null) return null;
  const s = readText(statFile);
  if (s === null) return null;
  const f = s.trim().split(/\s+/).map(Number);
  return f.length >= 7 ? f[6]! : null;
}

/** A free TCP port on 127.0.0.1 (bound and released: a small race, fine for a bench). */
/**
 * Calls `onLine` with each complete line a child writes (its JSON log on stdout). A line longer
 * than 64 KiB without an end is dropped, so a runaway child cannot grow this buffer.
 */
export function onLines(stream: Readable, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8').on('data', (d: string) => {
    partial += d;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      onLine(line);
    }
    if (partial.length > 65536) partial = '';
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0 }, () => {
      const port = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Wait until something accepts connections on 127.0.0.1:port, or throw after timeoutMs. */
export async function waitForPort(port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!alive()) throw new Error(`the process meant to listen on port ${port} has exited`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Samples the summed PSS of a set of processes (given afresh each time) until stopped. */
export class MemorySampler {
  #timer: NodeJS.Timeout;
  peakKiB = 0;
  peakProcs = 0;
  /**
   * The largest sampled sum of RssAnon: heap, Buffers and stacks, without the file pages a
   * process has mapped (postern's VmHWM also counts the LMDB pages its reads touched, which
   * the kernel can drop at any time).
   */
  peakAnonKiB = 0;

  constructor(pids: () => number[], everyMs = 250) {
    const sample = () => {
      const list = pids();
      let sum = 0;
      let anon = 0;
      for (const p of list) {
        sum += pssKiB(p) ?? 0;
        anon += statusKiB(p, 'RssAnon') ?? 0;
      }
      if (anon > this.peakAnonKiB) this.peakAnonKiB = anon;
      if (sum > this.peakKiB) {
        this.peakKiB = sum;
        this.peakProcs = list.length;
      }
    };
    sample();
    this.#timer = setInterval(sample, everyMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

export const STRACE = '/usr/bin/strace';

export function haveStrace(): boolean {
  return existsSync(STRACE);
}

/**
 * The descriptors of a process opened with O_DSYNC or O_SYNC (every write through them is
 * durable before it returns — LMDB writes its meta page that way), from /proc/PID/fdinfo.
 */
export function dsyncFds(pid: number): Map<number, string> {
  const out = new Map<number, string>();
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return out;
  }
  for (const n of names) {
    const info = readText(`/proc/${pid}/fdinfo/${n}`);
    const m = info?.match(/^flags:\s+([0-7]+)/m);
    if (!m) continue;
    const flags = parseInt(m[1]!, 8);
    if ((flags & 0o10000) === 0) continue; // O_DSYNC (O_SYNC includes it)
    let target = '?';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${n}`);
    } catch {
      /* closed meanwhile */
    }
    out.set(Number(n), target);
  }
  return out;
}

const SYNC_CALLS = ['fsync', 'fdatasync', 'msync', 'sync_file_range', 'syncfs'];
const WRITE_CALLS = ['pwrite64', 'pwritev', 'pwritev2', 'write', 'writev'];

/**
 * Count the durable-write system calls of a running process, all its threads and the children
 * it forks from now on: fsync, fdatasync, msync, sync_file_range, syncfs, plus writes through
 * descriptors opened with O_DSYNC/O_SYNC (found at attach time, so only the traced process's
 * own). Attaching slows every traced system call, so use it on a separate, untimed pass.
 */
export class SyncCounter {
  readonly #child: ChildProcess;
  readonly #outFile: string;
  readonly #dsync: Map<number, string>;
  #exited: Promise<void>;

  constructor(pid: number, outFile: string) {
    this.#outFile = outFile;
    this.#dsync = dsyncFds(pid);
    const calls = this.#dsync.size > 0 ? [...SYNC_CALLS, ...WRITE_CALLS] : SYNC_CALLS;
    this.#child = spawn(STRACE, ['-f', '-qq', '-o', outFile, '-e', `trace=${calls.join(',')}`, '-e', 'signal=none', '-e', 'abbrev=all', '-s', '0', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#exited = new Promise((resolve) => this.#child.once('close', () => resolve()));
  }

  /** The O_DSYNC descriptors seen at attach time (fd → path). */
  get dsyncDescriptors(): Record<string, string> {
    return Object.fromEntries([...this.#dsync].map(([fd, p]) => [String(fd), p]));
  }

  /** Wait until strace has attached, at most timeoutMs. */
  async attached(timeoutMs = 3000): Promise<void> {
    // With -qq strace says nothing on attach; give it a moment (attaching takes milliseconds).
    const deadline = Date.now() + Math.min(timeoutMs, 1000);
    while (Date.now() < deadline && this.#child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
  }

  /** Detach (SIGINT to strace, by its PID) and return the counts by call ("pwrite64 O_DSYNC" etc.). */
  async stop(): Promise<Record<string, number>> {
    if (this.#child.pid !== undefined && this.#child.exitCode === null) process.kill(this.#child.pid, 'SIGINT');
    const timer = setTimeout(() => {
      if (this.#child.pid !== undefined && this.#child.exitCode === null) process.kill(this.#child.pid, 'SIGKILL');
    }, 10_000);
    await this.#exited;
    clearTimeout(timer);
    const text = readText(this.#outFile) ?? '';
    const counts: Record<string, number> = {};
    for (const line of text.split('\n')) {
      // "1234  fdatasync(12 <unfinished ...>" or "1234  pwrite64(13, ..., 4096, 0) = 4096";
      // "<... x resumed>" lines finish a call already counted.
      const m = line.match(/^(?:\[pid\s+\d+\]\s+|\d+\s+)?([a-z_0-9]+)\((\d+)/);
      if (!m) continue;
      const call = m[1]!;
      if (SYNC_CALLS.includes(call)) counts[call] = (counts[call] ?? 0) + 1;
      else if (WRITE_CALLS.includes(call) && this.#dsync.has(Number(m[2]))) {
        const k = `${call} O_DSYNC`;
        counts[k] = (counts[k] ?? 0) + 1;
      }
    }
    return counts;
  }
}
