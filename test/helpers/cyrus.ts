// A throw-away Cyrus IMAP 3 (Debian's cyrus-imapd, unpacked by scripts/unpack-mta.sh: it
// conflicts with dovecot-imapd) on two loopback ports, IMAP and LMTP, everything under one temp
// folder: imapd.conf, cyrus.conf, the config directory (mailboxes.db, …), the mail partition,
// the sockets, a sasldb with the logins. Mailboxes exist only once the test creates them
// (IMAP CREATE as the admin); LMTP refuses any other recipient with 550 5.1.1 at RCPT.
//
// How it runs without being installed: Cyrus's `master` started as root with -C/-M naming the
// written files; it becomes `cyrus_user` (nobody here: Debian's compiled-in "cyrus" account
// exists only after the package's scripts) and spawns imapd and lmtpd (`lmtpd -a`: a loopback
// MTA is trusted without LMTP AUTH, as Debian's own cyrus.conf has it). Each service gets
// `-C` itself: master does not pass its configuration file on. Stopped by master's PID.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freePort } from '../../bench/lib/proc.js';
import { ImapClient, quote } from './imap-client.js';
import { makeTmpdir } from './tmpdir.js';
import { startDaemon } from './outside-daemon.js';
import { interopCache, unpackedProgram, unpackedRoot } from './unpacked.js';

export const CYRUS_SERVERNAME = 'cyrus.interop.test';
const ADMIN = 'cyrusadmin';
const ADMIN_PASSWORD = 'admin-secret';

export interface CyrusInstance {
  imapPort: number;
  lmtpPort: number;
  dir: string;
  /** Creates user/<name> (the user's INBOX) as the admin, over IMAP. */
  createMailbox(user: string): Promise<void>;
  /** An IMAP session logged in as `user` (its password is the one given to startCyrus). */
  login(user: string): Promise<ImapClient>;
  /** What master wrote on stderr (Cyrus logs to syslog, which the tests do not read). */
  stderr(): string;
}

/** Why the Cyrus tests cannot run here, or false. */
export function cyrusSkip(): string | false {
  if (!unpackedProgram('cyrus', 'master') || !unpackedProgram('cyrus', 'saslpasswd2')) return `cyrus is not unpacked in ${interopCache()} (run scripts/unpack-mta.sh cyrus)`;
  if ((process.getuid?.() ?? 0) !== 0) return 'the Cyrus tests need root (master starts as root and becomes its cyrus_user, nobody)';
  return false;
}

export async function startCyrus(t: TestContext, users: Record<string, string>): Promise<CyrusInstance> {
  const master = unpackedProgram('cyrus', 'master');
  const saslpasswd = unpackedProgram('cyrus', 'saslpasswd2');
  if (!master || !saslpasswd) throw new Error(String(cyrusSkip()));
  const bin = join(unpackedRoot('cyrus'), 'usr', 'lib', 'cyrus', 'bin');
  const id = (...args: string[]): number => Number(execFileSync('id', args, { encoding: 'utf8' }).trim());
  const uid = id('-u', 'nobody');
  const gid = id('-g', 'nobody');
  const group = execFileSync('id', ['-gn', 'nobody'], { encoding: 'utf8' }).trim();
  const dir = makeTmpdir('postern-cyrus-');
  chmodSync(dir, 0o755);
  for (const d of ['conf', 'part', 'sieve', 'run']) {
    mkdirSync(join(dir, d));
    chownSync(join(dir, d), uid, gid);
  }
  const imapPort = await freePort();
  const lmtpPort = await freePort();
  const conf = join(dir, 'imapd.conf');
  const sasldb = join(dir, 'sasldb2');
  writeFileSync(conf, `configdirectory: ${dir}/conf
defaultpartition: default
partition-default: ${dir}/part
sievedir: ${dir}/sieve
servername: ${CYRUS_SERVERNAME}
admins: ${ADMIN}
cyrus_user: nobody
cyrus_group: ${group}
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: ${sasldb}
lmtpsocket: ${dir}/run/lmtp
idlesocket: ${dir}/run/idle
notifysocket: ${dir}/run/notify
syslog_prefix: postern-cyrus-test
`);
  writeFileSync(join(dir, 'cyrus.conf'), `START {
  recover cmd="${bin}/ctl_cyrusdb -C ${conf} -r"
}
SERVICES {
  imap cmd="${bin}/imapd -C ${conf}" listen="127.0.0.1:${imapPort}" prefork=0
  lmtp cmd="${bin}/lmtpd -C ${conf} -a" listen="127.0.0.1:${lmtpPort}" prefork=0
}
EVENTS {
}
`);
  // The logins, in a sasldb that the services (as nobody) read; saslpasswd2 takes the password
  // on stdin with -p.
  for (const [user, password] of Object.entries({ [ADMIN]: ADMIN_PASSWORD, ...users })) {
    execFileSync(saslpasswd, ['-f', sasldb, '-p', '-c', '-u', CYRUS_SERVERNAME, user], { input: password, stdio: ['pipe', 'ignore', 'pipe'] });
  }
  chownSync(sasldb, uid, gid);
  chmodSync(sasldb, 0o600);

  // master stops its services when it gets SIGTERM; then the folder goes.
  const daemon = await startDaemon(t, {
    argv: [master, '-C', conf, '-M', join(dir, 'cyrus.conf'), '-p', join(dir, 'run', 'master.pid'), '-D'],
    dir,
    ports: [imapPort, lmtpPort],
    graceMs: 5000,
    failure: (stderr) => `cyrus master did not listen on 127.0.0.1:${imapPort} and :${lmtpPort}: ${stderr}`,
  });
  const login = async (user: string, password = users[user] ?? ''): Promise<ImapClient> => {
    const c = await ImapClient.connect(imapPort);
    try {
      await c.login(user, password);
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  };
  return {
    imapPort,
    lmtpPort,
    dir,
    createMailbox: async (user) => {
      const c = await login(ADMIN, ADMIN_PASSWORD);
      try {
        await c.ok(`CREATE ${quote(`user/${user}`)}`);
      } finally {
        await c.logout();
      }
    },
    login: (user) => login(user),
    stderr: daemon.stderr,
  };
}
