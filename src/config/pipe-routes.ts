// The start-up checks of pipe routes (POSTERN_ROUTES "pipe:") that need the system: the
// program is an executable file, and the user and group to run it as exist and may be taken.
// As Postfix pipe(8): when postern runs as root, a pipe route must name a user, never root,
// because the program gets values from the network as arguments; when it does not run as root
// it cannot change user, so a route naming another user is a configuration error.
// Users and groups are looked up with getent(1), so NSS sources (LDAP, sssd) count.
import { accessSync, constants as fsc, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { PipeTarget, RouteTable } from './routes.js';

/** The uid and gid a pipe route's program runs as; absent: postern's own. */
export interface PipeIdentity {
  readonly uid: number;
  readonly gid: number;
}

export interface PipeRouteCheck {
  /** By route pattern, for the routes that name a user or group. */
  readonly identities: ReadonlyMap<string, PipeIdentity>;
  /** Each a sentence naming POSTERN_ROUTES and the route. */
  readonly problems: readonly string[];
}

export interface PipeCheckOptions {
  /** The uid and gid postern runs as (default process.getuid/getgid). */
  uid?: number;
  gid?: number;
  /** "passwd" or "group" entry lookup (default getent); null when there is none. */
  lookup?: (db: 'passwd' | 'group', key: string) => string[] | null;
}

function getent(db: 'passwd' | 'group', key: string): string[] | null {
  try {
    // No shell; the key passed the route grammar ([A-Za-z0-9_.-], not starting with "-").
    const line = execFileSync('getent', [db, key], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0] ?? '';
    return line === '' ? null : line.split(':');
  } catch {
    return null; // exit 2: no such entry
  }
}

function checkProgram(t: PipeTarget): string | null {
  try {
    const st = statSync(t.program);
    if (!st.isFile()) return `${t.program} is not a file`;
    accessSync(t.program, fsc.X_OK);
    return null;
  } catch (err) {
    const code = (err as { code?: string }).code;
    return code === 'EACCES' ? `${t.program} is not executable` : `${t.program} cannot be used: ${code ?? (err as Error).message}`;
  }
}

/** Check every pipe route of `routes`; never throws. */
export function checkPipeRoutes(routes: RouteTable, o: PipeCheckOptions = {}): PipeRouteCheck {
  const myUid = o.uid ?? process.getuid?.() ?? 0;
  const myGid = o.gid ?? process.getgid?.() ?? 0;
  const lookup = o.lookup ?? getent;
  const identities = new Map<string, PipeIdentity>();
  const problems: string[] = [];
  for (const route of routes.routes) {
    const t = route.target;
    if (t.kind !== 'pipe') continue;
    const where = `POSTERN_ROUTES route ${route.pattern}=pipe:${t.program}`;
    const bad = checkProgram(t);
    if (bad !== null) problems.push(`${where}: ${bad}`);
    if (t.user === undefined && t.group === undefined) {
      if (myUid === 0) problems.push(`${where}: postern runs as root and a pipe program never does: give user= (e.g. pipe:user=vmail ${t.program} …)`);
      continue;
    }
    let uid = myUid;
    let gid = myGid;
    if (t.user !== undefined) {
      const pw = lookup('passwd', t.user);
      if (pw !== null && pw.length >= 4) {
        uid = Number(pw[2]);
        gid = Number(pw[3]);
      } else if (/^\d+$/.test(t.user)) {
        uid = Number(t.user);
        if (t.group === undefined) {
          problems.push(`${where}: user=${t.user} has no passwd entry to take a group from; give group=`);
          continue;
        }
      } else {
        problems.push(`${where}: user=${t.user} does not exist`);
        continue;
      }
    }
    if (t.group !== undefined) {
      const gr = lookup('group', t.group);
      if (gr !== null && gr.length >= 3) gid = Number(gr[2]);
      else if (/^\d+$/.test(t.group)) gid = Number(t.group);
      else {
        problems.push(`${where}: group=${t.group} does not exist`);
        continue;
      }
    }
    if (!Number.isSafeInteger(uid) || !Number.isSafeInteger(gid) || uid < 0 || gid < 0) {
      problems.push(`${where}: user=${t.user ?? ''} group=${t.group ?? ''} do not give a numeric uid and gid`);
      continue;
    }
    if (uid === 0) {
      problems.push(`${where}: a pipe program never runs as root (uid 0); give another user=`);
      continue;
    }
    if (myUid !== 0 && (uid !== myUid || gid !== myGid)) {
      problems.push(`${where}: runs as uid ${uid} gid ${gid}, but postern runs as uid ${myUid} gid ${myGid}, not root, and cannot change user; drop user=/group= or name postern's own`);
      continue;
    }
    identities.set(route.pattern, Object.freeze({ uid, gid }));
  }
  return { identities, problems };
}
