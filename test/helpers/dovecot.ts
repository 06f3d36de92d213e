// A throwaway Dovecot (Debian dovecot-core + dovecot-lmtpd, and dovecot-imapd for IMAP) for the
// delivery tests: a minimal dovecot.conf in a temp folder (every socket, state and log file in
// there). LMTP only: any user accepted, mail to <tmp>/mail/<user>/ as Maildir. With `imapUsers`:
// IMAP on a loopback port as well, users and passwords from a passwd-file (passdb and userdb),
// each user's Maildir where the test says. Started with `dovecot -F` as a child; stopped by its
// PID in t.after.
import { freePort } from '../../bench/lib/proc.js';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { makeTmpdir } from './tmpdir.js';
import { startDaemon } from './outside-daemon.js';

export interface DovecotLmtp {
  port: number;
  /** The IMAP port, when started with imapUsers; else null. */
  imapPort: number | null;
  /** <dir>/mail: each recipient's Maildir is mailRoot/<user as given in RCPT>. */
  mailRoot: string;
  logPath: string;
  /** The dovecot.conf written (dovecot-lda reads it with -c and asks this instance's auth). */
  confPath: string;
  /** The uid and gid mail is delivered as. */
  uid: number;
  gid: number;
  log(): string;
}

/** An IMAP login of the passwd-file: its password and the Maildir it reads (its home). */
export interface DovecotImapUser {
  user: string;
  password: string;
  maildir: string;
}

/** Why the IMAP tests cannot run here, or false. */
export function dovecotImapSkip(): string | false {
  if (!dovecotBinary()) return 'dovecot is not installed (apt-get install dovecot-core dovecot-lmtpd dovecot-imapd)';
  if (!existsSync('/usr/lib/dovecot/imap') || !existsSync('/usr/lib/dovecot/imap-login')) return 'dovecot-imapd is not installed (apt-get install dovecot-imapd)';
  return false;
}

/** The dovecot binary, or null when it is not installed (the test is then skipped). */
export function dovecotBinary(): string | null {
  for (const p of ['/usr/sbin/dovecot', '/usr/local/sbin/dovecot']) if (existsSync(p) && existsSync('/usr/lib/dovecot/lmtp')) return p;
  return null;
}

export async function startDovecotLmtp(t: TestContext, o: { imapUsers?: DovecotImapUser[] } = {}): Promise<DovecotLmtp> {
  const bin = dovecotBinary();
  if (!bin) throw new Error('dovecot is not installed (apt-get install dovecot-core dovecot-lmtpd)');
  const dir = makeTmpdir('postern-dovecot-');
  const id = (...args: string[]): string => execFileSync('id', args, { encoding: 'utf8' }).trim();
  const user = id('-un');
  const group = id('-gn');
  // Mail is written as the current user, except that Dovecot never delivers as uid 0
  // ("userdb returned 0 as uid"): as root (CI) the mail goes as `nobody`, into a folder it may
  // write.
  const asRoot = (process.getuid?.() ?? 0) === 0;
  const uid = asRoot ? Number(id('-u', 'nobody')) : process.getuid!();
  const gid = asRoot ? Number(id('-g', 'nobody')) : process.getgid!();
  const mailRoot = join(dir, 'mail');
  for (const d of ['run', 'state', 'mail']) mkdirSync(join(dir, d));
  if (asRoot) {
    chmodSync(dir, 0o755);
    chmodSync(mailRoot, 0o777);
  }
  const logPath = join(dir, 'dovecot.log');
  const port = await freePort();
  const imapPort = o.imapUsers ? await freePort() : null;
  const passwdPath = join(dir, 'passwd');
  // passwd-file lines: user:{PLAIN}password:uid:gid::home; mail_location maildir:~ reads the
  // Maildir at the home. The passwords are test data, readable by the auth process only.
  if (o.imapUsers) writeFileSync(passwdPath, o.imapUsers.map((u) => `${u.user}:{PLAIN}${u.password}:${uid}:${gid}::${u.maildir}\n`).join(''), { mode: 0o600 });
  const users = o.imapUsers
    ? `mail_location = maildir:~
auth_mechanisms = plain login
disable_plaintext_auth = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN ${passwdPath}
}
userdb {
  driver = passwd-file
  args = ${passwdPath}
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}`
    : `mail_location = maildir:${mailRoot}/%u
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=${uid} gid=${gid} home=${mailRoot}/%u allow_all_users=yes
}`;
  // Dovecot drops privileges to default_internal_user/default_login_user; as the current user
  // it needs no system accounts, except that imap-login refuses to run as root ("must not be
  // run as root"): as root its user is nobody. chroot is off for the services that default to
  // it (anvil, log) so nothing outside the temp folder is touched.
  const conf = `
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${logPath}
info_log_path = ${logPath}
protocols = lmtp${imapPort === null ? '' : ' imap'}
listen = 127.0.0.1
ssl = no
default_internal_user = ${user}
default_internal_group = ${group}
default_login_user = ${asRoot ? 'nobody' : user}
first_valid_uid = ${uid}
first_valid_gid = ${gid}
${users}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${port}
  }
}
service anvil {
  chroot =
}
service log {
  chroot =
}
`;
  const confPath = join(dir, 'dovecot.conf');
  writeFileSync(confPath, conf);
  const log = (): string => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');
  // One hook: stop Dovecot (by its PID), then remove the folder it was using.
  await startDaemon(t, {
    argv: [bin, '-F', '-c', confPath],
    dir,
    ports: imapPort === null ? [port] : [port, imapPort],
    failure: (stderr) => `dovecot did not listen on 127.0.0.1:${port}: ${stderr}\n${log()}`,
  });
  return { port, imapPort, mailRoot, logPath, confPath, uid, gid, log };
}
