// A throw-away Sendmail 8.17 (Debian's sendmail-bin, unpacked by scripts/unpack-mta.sh) on a
// loopback port, everything under one temp folder: sendmail.cf (built with the unpacked m4
// from the unpacked sendmail-cf macros), queue, pid file, aliases, mbox files. It takes mail
// for `sendmail.test` (alice, bob and carol, aliased to mbox files <dir>/mail/<local>; any
// other local part is 550 5.1.1 "User unknown" at RCPT) and sends everything else from
// 127.0.0.1 to postern on `relayPort` (SMART_HOST with the esmtp mailer). STARTTLS with a
// test certificate when given one.
//
// How it runs without being installed: `sendmail -C <cf> -bD -q5s` as root (a foreground
// daemon running the queue every 5 s), in a private mount and UTS namespace
// (private-namespace.ts): Sendmail qualifies its host name through the resolver before it
// reads any configuration and, when that fails, sleeps a minute and asks DNS. Deliveries to
// the alias files run as `daemon` (DefaultUser), which owns them.
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { freePort, waitForPort } from '../../bench/lib/proc.js';
import { makeTmpdir, removeTmpdir } from './tmpdir.js';
import { unpackedProgram, unpackedRoot, interopCache } from './unpacked.js';
import { namespaceSkip, spawnInNamespace, stopGroup } from './private-namespace.js';

export const SENDMAIL_MAILBOXES = ['alice', 'bob', 'carol'];
export const SENDMAIL_HOSTNAME = 'sendmail.interop.test';

export interface SendmailInstance {
  port: number;
  dir: string;
  /** The messages in a mailbox's mbox file, without their "From " lines, as text (latin1). */
  mailbox(local: string): string[];
  /** Sendmail's standard error (it logs to syslog, which a test does not read). */
  stderr(): string;
}

/** Why the Sendmail tests cannot run here, or false. */
export function sendmailSkip(): string | false {
  if (!unpackedProgram('sendmail', 'sendmail') || !unpackedProgram('sendmail', 'm4')) return `sendmail is not unpacked in ${interopCache()} (run scripts/unpack-mta.sh sendmail)`;
  const ns = namespaceSkip();
  return ns === false ? false : `Sendmail runs in a private namespace here, and ${ns}`;
}

/** An mbox file's messages: split at the "From " lines, each without the blank line that ends it. */
export function readMbox(text: string): string[] {
  if (text === '') return [];
  return text
    .split(/^From [^\n]*\n/m)
    .slice(1)
    .map((m) => (m.endsWith('\n\n') ? m.slice(0, -1) : m));
}

export async function startSendmail(t: TestContext, o: { relayPort?: number; tls?: { cert: string; key: string } } = {}): Promise<SendmailInstance> {
  const sendmail = unpackedProgram('sendmail', 'sendmail');
  const m4 = unpackedProgram('sendmail', 'm4');
  if (!sendmail || !m4) throw new Error(String(sendmailSkip()));
  const root = unpackedRoot('sendmail');
  const dir = makeTmpdir('postern-sendmail-');
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'queue'), { mode: 0o700 });
  mkdirSync(join(dir, 'mail'));
  // Delivered to as DefaultUser (daemon, uid/gid 1), which must be able to write them.
  for (const m of SENDMAIL_MAILBOXES) {
    writeFileSync(join(dir, 'mail', m), '', { mode: 0o600 });
    chownSync(join(dir, 'mail', m), 1, 1);
  }
  writeFileSync(join(dir, 'aliases'), SENDMAIL_MAILBOXES.map((m) => `${m}: ${join(dir, 'mail', m)}\n`).join(''));
  writeFileSync(join(dir, 'local-host-names'), '');
  writeFileSync(join(dir, 'trusted-users'), '');
  writeFileSync(join(dir, 'service.switch'), 'hosts files\naliases files\n');
  const port = await freePort();
  const q = (s: string): string => `\`${s}'`;
  const def = (name: string, value: string): string => `define(${q(name)}, ${q(value)})dnl\n`;
  let tls = '';
  if (o.tls) {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    writeFileSync(cert, readFileSync(o.tls.cert));
    // Sendmail refuses a key others may read.
    writeFileSync(key, readFileSync(o.tls.key), { mode: 0o600 });
    tls = def('confSERVER_CERT', cert) + def('confSERVER_KEY', key) + def('confCACERT', cert) + def('confCACERT_PATH', dir);
  }
  const relay = o.relayPort === undefined ? '' : def('SMART_HOST', 'esmtp:[127.0.0.1]') + def('ESMTP_MAILER_ARGS', `TCP $h ${o.relayPort}`);
  const cf = join(root, 'usr/share/sendmail/cf');
  // No OSTYPE: every OS file sets paths (procmail, /etc/mail) this instance must not use; the
  // one thing cf.m4 wants from it is that it was given.
  const mc = `divert(-1)
${def('_CF_DIR_', `${cf}/`)}divert(0)dnl
include(${q(join(cf, 'm4/cf.m4'))})dnl
VERSIONID(${q('postern interop test')})dnl
${def('__OSTYPE__', 'postern-test')}${def('confEBINDIR', join(root, 'usr/libexec/sendmail'))}${def('LOCAL_MAILER_PATH', join(root, 'usr/libexec/sendmail/mail.local'))}${def('confDOMAIN_NAME', SENDMAIL_HOSTNAME)}${def('QUEUE_DIR', join(dir, 'queue'))}${def('confPID_FILE', join(dir, 'sendmail.pid'))}${def('STATUS_FILE', join(dir, 'sendmail.st'))}${def('ALIAS_FILE', `hash:${join(dir, 'aliases')}`)}${def('HELP_FILE', join(root, 'etc/mail/helpfile'))}${def('confCW_FILE', join(dir, 'local-host-names'))}${def('confCT_FILE', join(dir, 'trusted-users'))}${def('confSERVICE_SWITCH_FILE', join(dir, 'service.switch'))}${def('confDEAD_LETTER_DROP', join(dir, 'dead.letter'))}${def('confDONT_PROBE_INTERFACES', 'True')}${def('confBIND_OPTS', '-DNSRCH -DEFNAMES')}${def('confDEF_USER_ID', '1:1')}${def('confDELIVERY_MODE', 'background')}${def('confTO_QUEUERETURN', '1h')}${def('confMIN_QUEUE_AGE', '0')}dnl
dnl The temp folder sits under /tmp, which is world-writable but sticky.
${def('confDONT_BLAME_SENDMAIL', 'TrustStickyBit')}${tls}${relay}FEATURE(${q('nocanonify')})dnl
dnl The test senders' domains exist nowhere; without this Sendmail asks DNS and refuses them.
FEATURE(${q('accept_unresolvable_domains')})dnl
DAEMON_OPTIONS(${q(`Port=${port}, Addr=127.0.0.1, Name=MTA`)})dnl
LOCAL_DOMAIN(${q('sendmail.test')})dnl
MAILER(${q('local')})dnl
MAILER(${q('smtp')})dnl
`;
  writeFileSync(join(dir, 'sendmail.mc'), mc);
  const cfPath = join(dir, 'sendmail.cf');
  writeFileSync(cfPath, execFileSync(m4, [join(dir, 'sendmail.mc')], { cwd: dir }));
  // The alias database, built by Sendmail itself (newaliases), in the namespace like the daemon.
  const aliases = spawnInNamespace({ hostname: SENDMAIL_HOSTNAME, dir, argv: [sendmail, '-C', cfPath, '-bi'] });
  let aliasOut = '';
  aliases.stdout!.setEncoding('utf8').on('data', (d: string) => (aliasOut += d));
  aliases.stderr!.setEncoding('utf8').on('data', (d: string) => (aliasOut += d));
  let timer: NodeJS.Timeout | undefined;
  const [code] = (await Promise.race([once(aliases, 'exit'), new Promise((r) => (timer = setTimeout(() => r(['timeout']), 10_000)))])) as [number | string];
  clearTimeout(timer);
  if (code !== 0) {
    if (aliases.pid !== undefined && code === 'timeout') process.kill(-aliases.pid, 'SIGKILL');
    removeTmpdir(dir);
    throw new Error(`sendmail -bi: ${code}: ${aliasOut}`);
  }
  const child = spawnInNamespace({ hostname: SENDMAIL_HOSTNAME, dir, argv: [sendmail, '-C', cfPath, '-bD', '-q5s'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdout!.resume();
  let exited = false;
  const gone = new Promise<void>((r) => child.once('exit', () => {
    exited = true;
    r();
  }));
  t.after(async () => {
    await stopGroup(child, gone, () => exited);
    removeTmpdir(dir);
  });
  try {
    await waitForPort(port, 10_000, () => !exited);
  } catch {
    throw new Error(`sendmail did not listen on 127.0.0.1:${port}: ${stderr}`);
  }
  return {
    port,
    dir,
    mailbox: (local) => {
      const f = join(dir, 'mail', local);
      return existsSync(f) ? readMbox(readFileSync(f, 'latin1')) : [];
    },
    stderr: () => stderr,
  };
}
