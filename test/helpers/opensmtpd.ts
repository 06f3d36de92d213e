// A throw-away OpenSMTPD 6.8 (Debian's opensmtpd, unpacked by scripts/unpack-mta.sh) on a
// loopback port, everything under one temp folder: smtpd.conf, spool, Maildirs. It takes mail
// for `osd.test` (alice, bob and carol, into <dir>/mail/<local>/ as Maildir; any other local
// part is refused at RCPT, not being in the user base) and relays everything else from local senders
// to postern on `relayPort` (`relay host smtp://127.0.0.1:port`, STARTTLS when offered).
// STARTTLS with a test certificate when given one.
//
// How it runs without being installed: `smtpd -d -v -f <conf>` as root in a private mount and
// UTS namespace (private-namespace.ts). OpenSMTPD's paths are compiled in and not settable:
// the spool /var/spool/smtpd, the chroot /var/lib/opensmtpd/empty, the control socket
// /var/run/smtpd.sock and its delivery helpers in /usr/libexec/opensmtpd; folders of the test
// (and the unpacked /usr/libexec) are bound over /var/spool, /var/lib, /run and /usr/libexec
// inside the namespace only. Its users are the base accounts daemon and mail (see the script).
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freePort, waitForPort } from '../../bench/lib/proc.js';
import { makeTmpdir, removeTmpdir } from './tmpdir.js';
import { unpackedProgram, unpackedRoot, interopCache } from './unpacked.js';
import { namespaceSkip, spawnInNamespace, stopGroup } from './private-namespace.js';

export const OPENSMTPD_MAILBOXES = ['alice', 'bob', 'carol'];
export const OPENSMTPD_HOSTNAME = 'osd.interop.test';

export interface OpenSmtpdInstance {
  port: number;
  dir: string;
  /** Files in the Maildir new/ of a mailbox, as text (latin1). */
  mailbox(local: string): string[];
  /** smtpd's log (-d -v writes it to the standard error). */
  log(): string;
  /**
   * Stop smtpd now (the test's end does it too). Before closing a postern node it relayed to:
   * OpenSMTPD keeps its connections for reuse and does not read an idle one, so postern's
   * graceful close would wait out its timeout for it.
   */
  stop(): Promise<void>;
}

/** Why the OpenSMTPD tests cannot run here, or false. */
export function opensmtpdSkip(): string | false {
  if (!unpackedProgram('opensmtpd', 'smtpd')) return `opensmtpd is not unpacked in ${interopCache()} (run scripts/unpack-mta.sh opensmtpd)`;
  const ns = namespaceSkip();
  return ns === false ? false : `OpenSMTPD runs in a private namespace here, and ${ns}`;
}

export async function startOpenSmtpd(t: TestContext, o: { relayPort?: number; tls?: { cert: string; key: string } } = {}): Promise<OpenSmtpdInstance> {
  const smtpd = unpackedProgram('opensmtpd', 'smtpd');
  if (!smtpd) throw new Error(String(opensmtpdSkip()));
  const dir = makeTmpdir('postern-opensmtpd-');
  chmodSync(dir, 0o755);
  // Stand-ins for /var/spool (smtpd makes smtpd/ in it), /var/lib (the chroot folder must be
  // root's and not writable by others) and /run (the control socket).
  for (const d of ['spool', 'var-lib/opensmtpd/empty', 'run']) mkdirSync(join(dir, d), { recursive: true, mode: 0o755 });
  // Deliveries run as daemon (uid/gid 1), the users' uid in the user base below.
  mkdirSync(join(dir, 'mail'));
  chownSync(join(dir, 'mail'), 1, 1);
  let pki = '';
  let listenTls = '';
  if (o.tls) {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    writeFileSync(cert, readFileSync(o.tls.cert));
    writeFileSync(key, readFileSync(o.tls.key), { mode: 0o600 });
    pki = `pki ${OPENSMTPD_HOSTNAME} cert "${cert}"\npki ${OPENSMTPD_HOSTNAME} key "${key}"\n`;
    listenTls = ` tls pki ${OPENSMTPD_HOSTNAME}`;
  }
  const port = await freePort();
  // Its own user base: each mailbox a user of uid/gid 1 (daemon) whose home is its Maildir.
  // A local part that is not in it is "550 Invalid recipient" at RCPT.
  const users = OPENSMTPD_MAILBOXES.map((m) => `${m} = "1:1:${join(dir, 'mail', m)}"`).join(', ');
  const relay = o.relayPort === undefined
    ? ''
    : `action "relay" relay host smtp://127.0.0.1:${o.relayPort} helo ${OPENSMTPD_HOSTNAME}\nmatch from local for any action "relay"\n`;
  const conf = `${pki}table users { ${users} }
listen on 127.0.0.1 port ${port} hostname ${OPENSMTPD_HOSTNAME}${listenTls}
action "local" maildir "%{user.directory}" userbase <users>
match from any for domain osd.test action "local"
${relay}`;
  const confPath = join(dir, 'smtpd.conf');
  writeFileSync(confPath, conf);
  const child = spawnInNamespace({
    hostname: OPENSMTPD_HOSTNAME,
    dir,
    binds: [
      { from: join(dir, 'spool'), to: '/var/spool' },
      { from: join(dir, 'var-lib'), to: '/var/lib' },
      { from: join(dir, 'run'), to: '/run' },
      { from: join(unpackedRoot('opensmtpd'), 'usr/libexec'), to: '/usr/libexec' },
    ],
    argv: [smtpd, '-d', '-v', '-f', confPath],
  });
  let log = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (log += d));
  let exited = false;
  const gone = new Promise<void>((r) => child.once('exit', () => {
    exited = true;
    r();
  }));
  const stop = (): Promise<void> => stopGroup(child, gone, () => exited);
  t.after(async () => {
    await stop();
    removeTmpdir(dir);
  });
  try {
    await waitForPort(port, 10_000, () => !exited);
  } catch {
    throw new Error(`smtpd did not listen on 127.0.0.1:${port}:\n${log}`);
  }
  return {
    port,
    dir,
    mailbox: (local) => {
      const d = join(dir, 'mail', local, 'new');
      return existsSync(d) ? readdirSync(d).sort().map((f) => readFileSync(join(d, f), 'latin1')) : [];
    },
    log: () => log,
    stop,
  };
}
