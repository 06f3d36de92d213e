// A throw-away Exim 4 (Debian's exim4-daemon-light, unpacked by scripts/unpack-mta.sh) on a
// loopback port, everything under one temp folder: spool, logs, pid file, Maildirs. It takes
// mail for `exim.test` (mailboxes alice, bob, carol and josé; any other local part is 550 5.1.1
// at RCPT) into <dir>/mail/<local>/ as Maildir, and relays everything else from 127.0.0.1 to
// postern on `relayPort` (manualroute, CHUNKING tried; TLS required with `relayRequireTls`).
// STARTTLS with a test certificate.
//
// How it runs without being installed: `exim4 -C <conf> -bdf -q2s` as root, the daemon
// re-executing itself through the wrapper (`exim_path`). An Exim reading a -C file that is not
// in its compiled trusted list gives up root in those re-executions, so local deliveries run as
// the Exim user itself (daemon, see the script) and the folders are writable for it.
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { freePort } from '../../bench/lib/proc.js';
import { makeTmpdir } from './tmpdir.js';
import { startDaemon } from './outside-daemon.js';
import { unpackedProgram, interopCache } from './unpacked.js';

export { withoutTrace } from './mail-text.js';

// josé: a UTF-8 local part (RFC 6531), for SMTPUTF8 (this Exim is built with I18N).
export const EXIM_MAILBOXES = ['alice', 'bob', 'carol', 'josé'];

export interface EximInstance {
  port: number;
  dir: string;
  /** Files in the Maildir new/ of a mailbox, as text (latin1). */
  mailbox(local: string): string[];
  /** Exim's main log. */
  mainlog(): string;
}

/** Why the Exim tests cannot run here, or false. */
export function eximSkip(): string | false {
  if (!unpackedProgram('exim', 'exim4')) return `exim is not unpacked in ${interopCache()} (run scripts/unpack-mta.sh exim)`;
  if ((process.getuid?.() ?? 0) !== 0) return 'the Exim tests need root (Exim binds and spools as root, delivers as its own user)';
  return false;
}

export async function startExim(t: TestContext, o: { relayPort?: number; tls?: { cert: string; key: string }; relayRequireTls?: boolean } = {}): Promise<EximInstance> {
  const wrapper = unpackedProgram('exim', 'exim4');
  if (!wrapper) throw new Error(String(eximSkip()));
  const dir = makeTmpdir('postern-exim-');
  chmodSync(dir, 0o755);
  const daemonUid = 1;
  const daemonGid = 1;
  for (const d of ['spool', 'log', 'mail', ...EXIM_MAILBOXES.map((m) => join('mail', m))]) {
    mkdirSync(join(dir, d), { recursive: true });
    chownSync(join(dir, d), daemonUid, daemonGid);
  }
  let tlsLines = 'tls_advertise_hosts =';
  if (o.tls) {
    // Read by Exim's receiving process, which runs as the Exim user.
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    writeFileSync(cert, readFileSync(o.tls.cert));
    writeFileSync(key, readFileSync(o.tls.key));
    chownSync(key, daemonUid, daemonGid);
    chmodSync(key, 0o600);
    tlsLines = `tls_advertise_hosts = *\ntls_certificate = ${cert}\ntls_privatekey = ${key}`;
  }
  const port = await freePort();
  const boxes = EXIM_MAILBOXES.join(' : ');
  const relay = o.relayPort === undefined
    ? ''
    : `to_postern:\n  driver = manualroute\n  domains = ! +local_domains\n  transport = to_postern\n  route_list = * 127.0.0.1\n  self = send\n  no_more\n`;
  const relayTransport = o.relayPort === undefined
    ? ''
    : `to_postern:\n  driver = smtp\n  port = ${o.relayPort}\n  allow_localhost\n  hosts_try_chunking = *\n${o.relayRequireTls ? '  hosts_require_tls = *\n' : ''}`;
  const conf = `exim_path = ${wrapper}
primary_hostname = exim.interop.test
qualify_domain = exim.test
exim_user = daemon
exim_group = daemon
never_users = root
spool_directory = ${dir}/spool
log_file_path = ${dir}/log/%slog
pid_file_path = ${dir}/exim.pid
daemon_smtp_ports = ${port}
local_interfaces = 127.0.0.1
domainlist local_domains = exim.test
hostlist relay_from_hosts = 127.0.0.1
acl_smtp_rcpt = acl_check_rcpt
chunking_advertise_hosts = *
pipelining_advertise_hosts = *
${tlsLines}
log_selector = +pipelining +received_recipients +tls_cipher +smtp_confirmation
host_lookup =
rfc1413_hosts =
keep_environment =
message_size_limit = 50M
timeout_frozen_after = 1h

begin acl
acl_check_rcpt:
  accept domains = +local_domains
         local_parts = ${boxes}
  deny   domains = +local_domains
         message = 5.1.1 unknown user <$local_part@$domain>
  accept hosts = +relay_from_hosts
  deny   message = 5.7.1 relay not permitted

begin routers
${relay}
local_user:
  driver = accept
  domains = +local_domains
  local_parts = ${boxes}
  transport = local_maildir

begin transports
${relayTransport}
local_maildir:
  driver = appendfile
  directory = ${dir}/mail/$local_part_data
  maildir_format
  return_path_add
  user = daemon
  group = daemon
  mode = 0600

begin retry
* * F,1h,2s
`;
  const confPath = join(dir, 'exim.conf');
  writeFileSync(confPath, conf);
  const mainlog = (): string => (existsSync(join(dir, 'log', 'mainlog')) ? readFileSync(join(dir, 'log', 'mainlog'), 'utf8') : '');
  await startDaemon(t, {
    argv: [wrapper, '-C', confPath, '-bdf', '-q2s'],
    dir,
    ports: [port],
    failure: (stderr) => `exim did not listen on 127.0.0.1:${port}: ${stderr}\n${mainlog()}\n${existsSync(join(dir, 'log', 'paniclog')) ? readFileSync(join(dir, 'log', 'paniclog'), 'utf8') : ''}`,
  });
  return {
    port,
    dir,
    mailbox: (local) => {
      const d = join(dir, 'mail', local, 'new');
      return existsSync(d) ? readdirSync(d).sort().map((f) => readFileSync(join(d, f), 'latin1')) : [];
    },
    mainlog,
  };
}
