// Inherited listening sockets in the form of systemd's socket activation (sd_listen_fds(3)):
// LISTEN_PID names the process they are for, LISTEN_FDS how many there are (fds 3, 4, ...),
// LISTEN_FDNAMES their names, colon-separated (FileDescriptorName= in a .socket unit). A
// takeover (successor.ts) hands its sockets to the new process in the same form.
import { PosternError } from '../errors.js';

/** The listeners a socket may be named for. */
export const LISTENER_NAMES = ['smtp', 'smtps', 'http'] as const;
export type ListenerName = (typeof LISTENER_NAMES)[number];
export type ListenFds = ReadonlyMap<ListenerName, number>;

/** sd_listen_fds' SD_LISTEN_FDS_START: the first inherited fd. */
export const LISTEN_FDS_START = 3;
/** More than a handful is a misconfigured unit, not something to loop over. */
const MAX_FDS = 16;

/**
 * Read and remove (so children do not inherit them) LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES.
 * null when there are none for this process (no LISTEN_PID, or another process's, as
 * sd_listen_fds says); a bad count, a name count that differs, a name postern does not know or
 * a name twice is an error naming it.
 */
export function takeListenFds(env: NodeJS.ProcessEnv, pid: number): ListenFds | null {
  const { LISTEN_PID: forPid, LISTEN_FDS: count, LISTEN_FDNAMES: names } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (forPid === undefined || count === undefined) return null;
  if (forPid !== String(pid)) return null;
  if (!/^[0-9]{1,2}$/.test(count) || Number(count) > MAX_FDS) {
    throw new PosternError('PST_ERR_LISTEN_FDS', `LISTEN_FDS=${JSON.stringify(count.slice(0, 20))} is not a count of sockets from 0 to ${MAX_FDS}`);
  }
  const n = Number(count);
  const list = names === undefined || names === '' ? [] : names.split(':');
  if (list.length !== n) {
    throw new PosternError('PST_ERR_LISTEN_FDS', `LISTEN_FDNAMES names ${names === undefined ? 'no socket' : `${list.length} sockets`} for LISTEN_FDS=${n}: name each one smtp, smtps or http (FileDescriptorName= in the .socket unit)`);
  }
  const out = new Map<ListenerName, number>();
  list.forEach((name, i) => {
    if (!(LISTENER_NAMES as readonly string[]).includes(name)) {
      throw new PosternError('PST_ERR_LISTEN_FDS', `inherited socket ${LISTEN_FDS_START + i} is named ${JSON.stringify(name.slice(0, 64))}: postern knows only ${LISTENER_NAMES.join(', ')}`);
    }
    if (out.has(name as ListenerName)) throw new PosternError('PST_ERR_LISTEN_FDS', `two inherited sockets are named ${name}`);
    out.set(name as ListenerName, LISTEN_FDS_START + i);
  });
  return out;
}

/**
 * With inherited sockets, each configured listener must have one and no socket may be left
 * without its listener (the kernel would queue connections on it that nobody ever accepts).
 */
export function checkListenFds(fds: ListenFds, wanted: Readonly<Record<ListenerName, boolean>>): void {
  for (const name of LISTENER_NAMES) {
    const variable = name === 'smtp' ? 'POSTERN_SMTP_PORT' : name === 'smtps' ? 'POSTERN_SMTPS_PORT' : 'POSTERN_HTTP_PORT';
    if (wanted[name] && !fds.has(name)) {
      throw new PosternError('PST_ERR_LISTEN_FDS', `the ${name} listener is on (${variable}) but no inherited socket is named ${name}: add one to the .socket unit (FileDescriptorName=${name}) or turn the listener off`);
    }
    if (!wanted[name] && fds.has(name)) {
      throw new PosternError('PST_ERR_LISTEN_FDS', `an inherited socket is named ${name} but the ${name} listener is off (${variable}${name === 'smtps' ? ' and a TLS certificate' : ''}): remove it from the .socket unit or turn the listener on`);
    }
  }
}
