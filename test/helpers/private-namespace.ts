// Runs an unpacked daemon in mount and UTS namespaces of its own (unshare(1)), for the MTAs
// that look their host name up, or insist on system paths, before any configuration is read
// (Sendmail, OpenSMTPD). Inside: the test's host name, an /etc/hosts that resolves it (with
// hosts lookups from files only and a resolver on 127.0.0.1, so no DNS query leaves the
// machine), and folders of the test bound over the system paths. Nothing outside sees them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

let probed: string | false | undefined;

/** Why private namespaces cannot be made here (not root, no unshare, no CAP_SYS_ADMIN), or false. */
export function namespaceSkip(): string | false {
  if (probed !== undefined) return probed;
  if ((process.getuid?.() ?? 0) !== 0) return (probed = 'needs root (a private mount namespace, and the daemon binds and spools as root)');
  const r = spawnSync('unshare', ['--mount', '--uts', '--propagation', 'private', 'sh', '-c', 'hostname probe.invalid && mount -n --bind /tmp /tmp'], { encoding: 'utf8', timeout: 5000 });
  probed = r.status === 0 ? false : `no private mount and UTS namespace here (unshare --mount --uts: ${(r.error?.message ?? r.stderr ?? '').trim() || `exit ${r.status}`})`;
  return probed;
}

export interface NamespaceOptions {
  /** The host name inside; /etc/hosts maps it to 127.0.0.1. */
  hostname: string;
  /** A folder of the test for the generated /etc files. */
  dir: string;
  /** Folders (or files) bound over existing system paths, in order. */
  binds?: Array<{ from: string; to: string }>;
  argv: string[];
}

/**
 * Spawn `argv` inside the namespaces. The process keeps the child's PID (unshare and sh exec
 * it) and leads a process group of its own, so stopping it and what it forked is one kill.
 */
export function spawnInNamespace(o: NamespaceOptions): ChildProcess {
  const etc = join(o.dir, 'ns-etc');
  mkdirSync(etc, { recursive: true });
  writeFileSync(join(etc, 'hosts'), `127.0.0.1 localhost\n127.0.0.1 ${o.hostname}\n::1 localhost\n`);
  writeFileSync(join(etc, 'nsswitch.conf'), 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n');
  writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\n');
  const binds = ['hosts', 'nsswitch.conf', 'resolv.conf']
    .filter((f) => existsSync(join('/etc', f)))
    .map((f) => ({ from: join(etc, f), to: join('/etc', f) }))
    .concat(o.binds ?? []);
  // The paths go in as arguments, never into the script text.
  const script = 'set -e; hostname "$1"; shift; while [ "$1" != -- ]; do mount -n --bind "$1" "$2"; shift 2; done; shift; exec "$@"';
  const args = ['--mount', '--uts', '--propagation', 'private', 'sh', '-c', script, 'sh', o.hostname, ...binds.flatMap((b) => [b.from, b.to]), '--', ...o.argv];
  return spawn('unshare', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
}

/** SIGTERM to the daemon's process group, SIGKILL after graceMs; resolves once it exited. */
export async function stopGroup(child: ChildProcess, exited: Promise<void>, isDone: () => boolean, graceMs = 3000): Promise<void> {
  if (isDone() || child.pid === undefined) return;
  const pid = child.pid;
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(-pid, s);
    } catch {
      // Already gone.
    }
  };
  signal('SIGTERM');
  const killer = setTimeout(() => signal('SIGKILL'), graceMs);
  await exited;
  clearTimeout(killer);
  // Children that outlived the leader (a delivery in flight) go too.
  signal('SIGKILL');
}
