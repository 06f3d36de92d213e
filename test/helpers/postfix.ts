// A private, throw-away Postfix instance for the interop tests (test/interop), able to do what
// the accept-only bench instance (bench/lib/postfix.ts) deliberately cannot: deliver.
//
//   role 'receiver': smtpd on a loopback port accepts mail for `mailboxes`@`virtualDomain` and
//     the virtual(8) agent writes each recipient's copy to <root>/mail/<mailbox>/ (Maildir),
//     as `nobody` (virtual refuses uid 0).
//   role 'relay': everything it accepts (smtpd on a loopback port, or sendmail -C / pickup) is
//     sent by its smtp(8) client to `relayhost = [127.0.0.1]:<relayPort>`.
//
// Everything lives under one temp folder (config_directory, queue_directory, data_directory,
// maildir base, maillog via postlogd): started with `postfix -c DIR start`, stopped in t.after
// with `postfix -c DIR stop` and then SIGKILL by PID for any of its processes (the master and
// the children it had) still alive. The system's own instance (/etc/postfix) is never touched.
// Needs root (the daemons drop to the `postfix` user), like the bench instance.
import { spawnSync, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { childrenOf, freePort, pidAlive } from '../../bench/lib/proc.js';
import { POSTFIX, havePostfix, makeInstanceDirs, waitForMaster } from '../../bench/lib/postfix.js';

/**
 * cleanup(8)'s warnings when a queue file's time stamp (the file system's clock) is ahead of
 * the process clock on a loaded machine ("file system clock is 1 seconds ahead of local clock",
 * then "resetting file time stamps"): about the host, not about what postern sent it.
 */
const HOST_CLOCK_NOISE = /warning: (?:file system clock is \d+ seconds? ahead of local clock|resetting file time stamps)/;

export { POSTFIX, havePostfix };
export const SENDMAIL = '/usr/sbin/sendmail';
export const POSTQUEUE = '/usr/sbin/postqueue';

/**
 * The `skip` option for a test that needs Postfix: skipped only when Postfix is missing and
 * we are not in CI (in CI, .ci/run installs postfix, so a missing one must fail loudly).
 */
export function postfixSkip(): string | false {
  if (process.env.CI) return false;
  return havePostfix() ? false : `${POSTFIX} is not installed`;
}

export interface ReceiverOptions {
  role: 'receiver';
  /** The domain whose mail is delivered to Maildirs (virtual_mailbox_domains). */
  virtualDomain: string;
  /** Its mailboxes (local parts); others get 550 at RCPT. "+ext" is stripped (recipient_delimiter). */
  mailboxes: string[];
}
export interface RelayOptions {
  role: 'relay';
  /** Where everything goes: relayhost = [127.0.0.1]:relayPort. */
  relayPort: number;
}
export type PostfixOptions = (ReceiverOptions | RelayOptions) & {
  /** Extra main.cf settings (replace a template line of the same name, or appended). */
  overrides?: Record<string, string>;
};

export interface DeliveredFile {
  name: string;
  /** Raw bytes as the virtual agent wrote them (LF line ends). */
  bytes: Buffer;
}

export interface PostfixInstance {
  readonly root: string;
  readonly configDir: string;
  readonly queueDir: string;
  /** smtpd's port on 127.0.0.1. */
  readonly port: number;
  readonly mailRoot: string;
  masterPid(): number | null;
  /** The maillog so far. */
  log(): string;
  /** warning/fatal/panic/error lines of the maillog (but the host's clock noise, HOST_CLOCK_NOISE). */
  problems(): string[];
  /** Maildir files delivered to <local part> (new/ and cur/), sorted by name (delivery order). */
  maildir(local: string): DeliveredFile[];
  /** `postqueue -c DIR -p` output. */
  queueListing(): string;
  /** True when `postqueue -p` says "Mail queue is empty". */
  queueEmpty(): boolean;
  /** `postqueue -c DIR -f`: attempt delivery of everything queued now. */
  flush(): void;
  /** `sendmail -C DIR -f from -i -- rcpts` with `message` on stdin (local submission via pickup). */
  sendmail(from: string, rcpts: string[], message: string | Buffer): { code: number; out: string };
  stop(): Promise<void>;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.MAIL_CONFIG;
  return env;
}

function run(cmd: string, args: string[], input?: string | Buffer): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, env: cleanEnv(), ...(input !== undefined ? { input } : {}) });
  return { code: r.status ?? 1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim() };
}

function nobodyIds(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());
    if (Number.isInteger(uid) && uid > 0 && Number.isInteger(gid) && gid > 0) return { uid, gid };
  } catch {
    /* fall through */
  }
  return { uid: 65534, gid: 65534 };
}

function mainCf(o: PostfixOptions, paths: { configDir: string; queueDir: string; dataDir: string; root: string; maillog: string; mailRoot: string; mapFile: string }, ids: { uid: number; gid: number }): string {
  const common: Array<[string, string]> = [
    ['compatibility_level', '3.6'],
    ['config_directory', paths.configDir],
    ['queue_directory', paths.queueDir],
    ['data_directory', paths.dataDir],
    ['maillog_file_prefixes', paths.root],
    ['maillog_file', paths.maillog],
    ['syslog_name', o.role === 'receiver' ? 'postfix-rx' : 'postfix-relay'],
    ['inet_interfaces', '127.0.0.1'],
    ['inet_protocols', 'ipv4'],
    ['myhostname', o.role === 'receiver' ? 'rx.postfix.interop' : 'relay.postfix.interop'],
    ['mydomain', 'postfix.interop'],
    ['myorigin', '$myhostname'],
    ['smtpd_banner', '$myhostname ESMTP'],
    ['smtpd_peername_lookup', 'no'],
    ['disable_dns_lookups', 'yes'],
    ['smtp_host_lookup', 'native'],
    ['mynetworks', '127.0.0.0/8'],
    ['mydestination', ''],
    ['relay_domains', ''],
    ['local_recipient_maps', ''],
    ['alias_maps', ''],
    ['alias_database', ''],
    ['biff', 'no'],
    ['append_dot_mydomain', 'no'],
    // Don't treat loopback SMTP clients as local submitters (which would get Date,
    // Message-ID, From added and addresses rewritten): the bodies must arrive as sent.
    ['local_header_rewrite_clients', ''],
    ['smtpd_relay_restrictions', 'permit_mynetworks, reject_unauth_destination'],
    ['smtpd_recipient_restrictions', ''],
    ['smtpd_client_connection_count_limit', '0'],
    ['smtpd_client_connection_rate_limit', '0'],
    ['smtpd_tls_security_level', 'none'],
    ['smtp_tls_security_level', 'none'],
    ['message_size_limit', '26214400'],
    // Retry soon should the peer be briefly unavailable; never a delay warning.
    ['queue_run_delay', '1s'],
    ['minimal_backoff_time', '1s'],
    ['maximal_backoff_time', '2s'],
    ['delay_warning_time', '0h'],
  ];
  const role: Array<[string, string]> =
    o.role === 'receiver'
      ? [
          ['virtual_mailbox_domains', o.virtualDomain],
          ['virtual_mailbox_base', paths.mailRoot],
          // texthash: needs no postmap (virtual(8) refuses regexp substitutions for mailbox
          // paths); "<local part>/" = a Maildir per mailbox.
          ['virtual_mailbox_maps', `texthash:${paths.mapFile}`],
          ['recipient_delimiter', '+'],
          ['virtual_uid_maps', `static:${ids.uid}`],
          ['virtual_gid_maps', `static:${ids.gid}`],
          ['defer_transports', 'smtp, relay, local, lmtp'],
        ]
      : [
          ['relayhost', `[127.0.0.1]:${o.relayPort}`],
          ['default_transport', 'smtp'],
          ['relay_transport', 'relay'],
          ['smtp_helo_name', '$myhostname'],
        ];
  const map = new Map<string, string>([...common, ...role]);
  for (const [k, v] of Object.entries(o.overrides ?? {})) {
    if (!/^[a-z0-9_]+$/.test(k)) throw new Error(`not a main.cf parameter name: ${k}`);
    map.set(k, v);
  }
  return `# Private Postfix for test/interop (test/helpers/postfix.ts)\n${[...map].map(([k, v]) => `${k} = ${v}`).join('\n')}\n`;
}

function masterCf(port: number): string {
  // chroot (column 5) is n everywhere: the temp queue has no copies of /etc files.
  return `# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:${port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;
}

/** Start a private Postfix; it is stopped (and its folder removed) in t.after. */
export async function startPostfix(t: TestContext, o: PostfixOptions): Promise<PostfixInstance> {
  if (!havePostfix()) throw new Error(`${POSTFIX} is not installed (apt-get install postfix)`);
  const port = await freePort();
  const { root, configDir, queueDir, dataDir, maillog } = makeInstanceDirs('postern-interop-postfix-');
  const mailRoot = join(root, 'mail');
  const mapFile = join(configDir, 'virtual_mailboxes.texthash');
  const ids = nobodyIds();
  if (o.role === 'receiver') {
    mkdirSync(mailRoot, { mode: 0o755 });
    chownSync(mailRoot, ids.uid, ids.gid); // virtual(8) writes as nobody
    for (const m of o.mailboxes) if (!/^[a-z0-9._-]+$/.test(m)) throw new Error(`not a plain mailbox name: ${m}`);
    writeFileSync(mapFile, o.mailboxes.map((m) => `${m}@${o.virtualDomain} ${m}/\n`).join(''));
  }
  writeFileSync(join(configDir, 'main.cf'), mainCf(o, { configDir, queueDir, dataDir, root, maillog, mailRoot, mapFile }, ids));
  writeFileSync(join(configDir, 'master.cf'), masterCf(port));

  let masterPid: number | null = null;
  // Every PID of this instance ever seen (master and children), for the final SIGKILL sweep.
  const seen = new Set<number>();
  const note = () => {
    if (masterPid !== null && pidAlive(masterPid)) {
      seen.add(masterPid);
      for (const c of childrenOf(masterPid)) seen.add(c);
    }
  };
  const log = (): string => {
    try {
      return readFileSync(maillog, 'utf8');
    } catch {
      return '';
    }
  };
  let stopped = false;
  const inst: PostfixInstance = {
    root,
    configDir,
    queueDir,
    port,
    mailRoot,
    masterPid: () => masterPid,
    log,
    problems: () =>
      log()
        .split('\n')
        .filter((l) => /\b(warning|fatal|panic|error):/.test(l) && !HOST_CLOCK_NOISE.test(l)),
    maildir(local) {
      const out: DeliveredFile[] = [];
      for (const sub of ['new', 'cur']) {
        const dir = join(mailRoot, local, sub);
        if (!existsSync(dir)) continue;
        for (const name of readdirSync(dir)) out.push({ name, bytes: readFileSync(join(dir, name)) });
      }
      // Maildir names start with the delivery time in seconds, then a microsecond part:
      // "1764366727.V801I6c9M123456.host". Sort numerically on both.
      const key = (n: string) => {
        const m = /^(\d+)\.[^.]*?M(\d+)/.exec(n);
        return m ? Number(m[1]) * 1e6 + Number(m[2]) : 0;
      };
      return out.sort((a, b) => key(a.name) - key(b.name) || a.name.localeCompare(b.name));
    },
    queueListing() {
      note();
      return run(POSTQUEUE, ['-c', configDir, '-p']).out;
    },
    queueEmpty() {
      return /Mail queue is empty/.test(inst.queueListing());
    },
    flush() {
      note();
      run(POSTQUEUE, ['-c', configDir, '-f']);
    },
    sendmail(from, rcpts, message) {
      note();
      return run(SENDMAIL, ['-C', configDir, '-f', from, '-i', '--', ...rcpts], message);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      note();
      run(POSTFIX, ['-c', configDir, 'stop']);
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && [...seen].some(pidAlive)) await new Promise((r) => setTimeout(r, 100));
      for (const p of seen) {
        if (pidAlive(p)) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            /* gone meanwhile */
          }
        }
      }
    },
  };

  t.after(async () => {
    await inst.stop();
    if (!process.env.POSTERN_KEEP_POSTFIX) rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  });

  // `postfix start` runs its own checks (and creates the queue's subfolders); a separate
  // `postfix check` only when it fails, for the message.
  const start = run(POSTFIX, ['-c', configDir, 'start']);
  if (start.code !== 0) throw new Error(`postfix -c ${configDir} start failed: ${start.out}\n${run(POSTFIX, ['-c', configDir, 'check']).out}\n${inst.problems().join('\n')}`);
  try {
    masterPid = await waitForMaster(port, queueDir);
    note();
  } catch (err) {
    throw new Error(`private postfix did not come up: ${(err as Error).message}\n${inst.problems().join('\n')}`, { cause: err });
  }
  return inst;
}
