// A throw-away Courier (Debian's courier-mta and courier-imap, unpacked by
// scripts/unpack-mta.sh) on loopback ports, everything under one temp folder: configuration,
// spool, Maildirs, the syslog it writes. It takes mail for `courier.test` (accounts alice, bob
// and carol in a courier-authlib userdb; any other local part is 550 at RCPT) into
// <dir>/mail/<local>/Maildir, relays everything else from 127.0.0.1 to postern on `relayPort`
// (esmtproutes smarthost), offers STARTTLS with a test certificate (`tls`, else its own), and
// with `imapUsers` also serves IMAP (imaplogin → imapd) for those userdb accounts.
//
// How it runs without being installed: Courier's paths are compiled in, so everything runs
// inside bin/courier-ns (a private mount and PID namespace, see the script), which shows this
// folder as /etc/courier, /var/lib/courier and /run/courier. Stopped by killing that
// namespace's unshare by PID: the kernel then ends every process in it.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freePort, waitForPort } from '../../bench/lib/proc.js';
import { makeCert } from './node.js';
import { makeTmpdir, removeTmpdir } from './tmpdir.js';
import { interopCache, unpackedProgram, unpackedRoot } from './unpacked.js';

export const COURIER_MAILBOXES = ['alice', 'bob', 'carol'];

/** Courier's mail user in the namespace: the uid and gid of daemon (see courier-ns). */
const MAIL_UID = 1;
const MAIL_GID = 1;

export interface CourierImapUser {
  name: string;
  password: string;
  /** The Maildir imapd opens; the account runs as its owner, as a vmail setup does. */
  maildir: string;
}

export interface CourierInstance {
  port: number;
  /** IMAP port, when `imapUsers` were given. */
  imapPort: number;
  dir: string;
  /** Files in the Maildir new/ of a courier.test mailbox, as text (latin1). */
  mailbox(local: string): string[];
  /** What Courier wrote to syslog (courierd, courieresmtp, courierlocal, imapd, …). */
  log(): string;
}

let nsProbe: string | false | undefined;

/** Why the Courier tests cannot run here, or false. */
export function courierSkip(): string | false {
  const ns = unpackedProgram('courier', 'courier-ns');
  if (!ns) return `courier is not unpacked in ${interopCache()} (run scripts/unpack-mta.sh courier)`;
  if ((process.getuid?.() ?? 0) !== 0) return 'the Courier tests need root (Courier runs from a private mount namespace at its compiled-in paths)';
  if (nsProbe === undefined) {
    // Overlay and bind mounts in a new mount namespace need CAP_SYS_ADMIN (a container
    // started without it refuses them): try once.
    const dir = makeTmpdir('postern-courier-probe-');
    for (const d of ['etc', 'spool', 'run']) mkdirSync(join(dir, d));
    const r = spawnSync(ns, [dir, '/bin/true'], { encoding: 'utf8', timeout: 10_000 });
    removeTmpdir(dir);
    nsProbe = r.status === 0 ? false : `this machine refuses the mount namespace Courier runs in (unshare/mount: ${(r.stderr || String(r.error ?? r.status)).trim().split('\n')[0]})`;
  }
  return nsProbe;
}

/** userdb's {SHA} password form (courier-authlib checkpassword). */
function userdbPassword(pw: string): string {
  return `{SHA}${createHash('sha1').update(pw).digest('base64')}`;
}

function setVar(text: string, name: string, value: string): string {
  const re = new RegExp(`^${name}=.*$`, 'm');
  return re.test(text) ? text.replace(re, `${name}=${value}`) : `${text}\n${name}=${value}\n`;
}

export async function startCourier(t: TestContext, o: { relayPort?: number; tls?: { cert: string; key: string }; imapUsers?: CourierImapUser[] } = {}): Promise<CourierInstance> {
  const ns = unpackedProgram('courier', 'courier-ns');
  if (!ns) throw new Error(String(courierSkip()));
  const dir = makeTmpdir('postern-courier-');
  // Courier's own processes run as the mail user and must reach their folders.
  chmodSync(dir, 0o755);
  const etc = join(dir, 'etc');
  const spool = join(dir, 'spool');
  const run = join(dir, 'run');
  cpSync(join(unpackedRoot('courier'), 'etc', 'courier'), etc, { recursive: true });
  cpSync(join(unpackedRoot('courier'), 'var', 'lib', 'courier'), spool, { recursive: true });
  chownSync(spool, MAIL_UID, MAIL_GID);
  chmodSync(spool, 0o750);
  for (const d of readdirSync(spool)) {
    chownSync(join(spool, d), MAIL_UID, MAIL_GID);
    chmodSync(join(spool, d), d === 'tmp' ? 0o770 : 0o750);
  }
  mkdirSync(join(run, 'authdaemon'), { recursive: true });
  chownSync(run, 0, MAIL_GID);
  chmodSync(run, 0o775);
  chownSync(join(run, 'authdaemon'), MAIL_UID, MAIL_GID);
  chmodSync(join(run, 'authdaemon'), 0o750);

  const port = await freePort();
  const imapPort = o.imapUsers ? await freePort() : 0;
  writeFileSync(join(etc, 'me'), 'courier.interop.test\n');
  writeFileSync(join(etc, 'defaultdomain'), 'courier.test\n');
  writeFileSync(join(etc, 'locals'), 'courier.test\n');
  writeFileSync(join(etc, 'esmtpacceptmailfor'), 'courier.test\n');
  // An empty domain is the smarthost for every domain that is not local.
  writeFileSync(join(etc, 'esmtproutes'), o.relayPort === undefined ? '' : `:[127.0.0.1],${o.relayPort}\n`);
  writeFileSync(join(etc, 'smtpaccess', 'default'), '127.0.0.1\tallow,RELAYCLIENT\n');
  writeFileSync(join(etc, 'authdaemonrc'), setVar(readFileSync(join(etc, 'authdaemonrc'), 'utf8'), 'authmodulelist', '"authuserdb"'));
  let esmtpd = readFileSync(join(etc, 'esmtpd'), 'utf8');
  esmtpd = setVar(esmtpd, 'PORT', String(port));
  esmtpd = setVar(esmtpd, 'ADDRESS', '127.0.0.1');
  // No DNS here: the sender domain check would refuse every test sender.
  esmtpd = setVar(esmtpd, 'BOFHCHECKDNS', '0');
  esmtpd = setVar(esmtpd, 'TARPIT', '0');
  // Courier rewrites the addresses in From:, To:, Cc: of mail it receives ("<a@b>" becomes
  // "a@b") unless told not to; the tests compare bodies byte for byte.
  esmtpd = setVar(esmtpd, 'NOADDRREWRITE', '1');
  // And it adds the RFC 2045 fields a MIME-Version message lacks (Content-Type: text/plain;
  // charset=utf-8, Content-Transfer-Encoding), re-spelling MIME-Version as Mime-Version.
  esmtpd = setVar(esmtpd, 'MIME', 'none');
  // STARTTLS always: couriertls reads one file with the certificate and its key (a route
  // with /tls=none keeps a session in plain text).
  const tls = o.tls ?? makeCert(t);
  const pem = join(etc, 'esmtpd.pem');
  writeFileSync(pem, readFileSync(tls.cert, 'utf8') + readFileSync(tls.key, 'utf8'));
  chownSync(pem, MAIL_UID, MAIL_GID);
  chmodSync(pem, 0o600);
  writeFileSync(join(etc, 'esmtpd'), esmtpd);
  // The output modules (courieresmtp) rewrite the same header fields again when relaying.
  let courierd = readFileSync(join(etc, 'courierd'), 'utf8');
  courierd = setVar(courierd, 'NOADDRREWRITE', '1');
  courierd = setVar(courierd, 'MIME', 'none');
  writeFileSync(join(etc, 'courierd'), courierd);
  if (o.imapUsers) {
    let imapd = readFileSync(join(etc, 'imapd'), 'utf8');
    imapd = setVar(imapd, 'PORT', String(imapPort));
    imapd = setVar(imapd, 'ADDRESS', '127.0.0.1');
    writeFileSync(join(etc, 'imapd'), imapd);
  }

  const users: string[] = [];
  for (const m of COURIER_MAILBOXES) {
    const home = join(dir, 'mail', m);
    for (const sub of ['', 'Maildir', 'Maildir/tmp', 'Maildir/new', 'Maildir/cur']) {
      mkdirSync(join(home, sub), { recursive: true });
      chownSync(join(home, sub), MAIL_UID, MAIL_GID);
    }
    users.push(`${m}\tuid=${MAIL_UID}|gid=${MAIL_GID}|home=${home}|mail=${home}/Maildir|systempw=${userdbPassword('not-used')}`);
  }
  for (const u of o.imapUsers ?? []) {
    const st = statSync(u.maildir);
    users.push(`${u.name}\tuid=${st.uid}|gid=${st.gid}|home=${u.maildir}|mail=${u.maildir}|systempw=${userdbPassword(u.password)}`);
  }
  writeFileSync(join(etc, 'userdb'), users.join('\n') + '\n', { mode: 0o600 });
  chmodSync(join(etc, 'userdb'), 0o600);

  const logFile = join(dir, 'syslog');
  // Run inside the namespace: a syslog reader on /dev/log (Courier logs only to syslog), the
  // databases the package scripts would build, then the daemons as their init scripts start
  // them. The first process stays as the namespace's init.
  const start = `set -e
perl -MIO::Socket::UNIX -MSocket -e '
  my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => "/dev/log") or die "syslog socket: $!";
  chmod 0666, "/dev/log";
  open(my $o, ">>", $ARGV[0]) or die "$ARGV[0]: $!";
  $o->autoflush(1);
  while (defined $s->recv(my $m, 65536)) { $m =~ s/\\0+$//; $m =~ s/\\n?$/\\n/; print $o $m; }
' ${logFile} &
i=0; while [ ! -S /dev/log ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
makeuserdb
makesmtpaccess
makealiases
/usr/sbin/authdaemond start
/usr/lib/courier/courierctl.start
/usr/sbin/esmtpd start
${o.imapUsers ? '/usr/sbin/imapd start' : ''}
exec sleep 2147483647
`;
  writeFileSync(join(dir, 'start.sh'), start);
  const child = spawn(ns, [dir, '/bin/sh', join(dir, 'start.sh')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
  let exited = false;
  const gone = new Promise<void>((r) => child.once('exit', () => {
    exited = true;
    r();
  }));
  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  t.after(async () => {
    if (!exited && child.pid !== undefined) {
      // unshare --kill-child: its death SIGKILLs the namespace's init, and with it every
      // Courier process in the namespace.
      process.kill(child.pid, 'SIGKILL');
      await gone;
    }
    removeTmpdir(dir);
  });
  try {
    await waitForPort(port, 15_000, () => !exited);
    if (o.imapUsers) await waitForPort(imapPort, 15_000, () => !exited);
  } catch {
    throw new Error(`courier did not listen on 127.0.0.1:${port}${o.imapUsers ? ` and :${imapPort}` : ''}: ${output}\n${log()}`);
  }
  return {
    port,
    imapPort,
    dir,
    mailbox: (local) => {
      const d = join(dir, 'mail', local, 'Maildir', 'new');
      return existsSync(d) ? readdirSync(d).sort().map((f) => readFileSync(join(d, f), 'latin1')) : [];
    },
    log,
  };
}
