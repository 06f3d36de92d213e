// A real validating resolver for a test: a zone signed in the test (ldns-keygen and
// ldns-signzone from ldnsutils), served by unbound on a free loopback port as an auth-zone for
// its own lookups, with the zone's key-signing key as the only trust anchor, so its answers
// carry AD, and SERVFAIL for data that fails validation. Stopped by its PID in t.after. Tests
// skip with UNBOUND_SKIP when the programs are missing (.ci/run installs unbound and ldnsutils).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tmpdir } from './tmpdir.js';
import { spawnDaemon, waitUntilReady } from './outside-daemon.js';
import { freePort } from '../../bench/lib/proc.js';
import { query, TYPE } from '../../src/delivery/dns-wire.js';

function find(name: string, dirs: string[]): string | null {
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p)) ?? null;
}

const UNBOUND = find('unbound', ['/usr/sbin', '/usr/bin', '/usr/local/sbin']);
const KEYGEN = find('ldns-keygen', ['/usr/bin', '/usr/local/bin']);
const SIGNZONE = find('ldns-signzone', ['/usr/bin', '/usr/local/bin']);

/** Why an unbound test is skipped, or false when it can run. */
export const UNBOUND_SKIP: string | false =
  UNBOUND === null ? 'unbound is not installed (Debian package unbound)' : KEYGEN === null || SIGNZONE === null ? 'ldns-keygen/ldns-signzone are not installed (Debian package ldnsutils)' : false;

export interface SignedZone {
  /** The zone's apex, without the final dot ("example.test"). */
  origin: string;
  /** Records in zone-file form, relative names or absolute with the dot. */
  records: string[];
  /** Applied to the signed zone text before unbound reads it: a way to make data bogus. */
  tamper?: (signed: string) => string;
}

/** unbound serving `zones` (signed here) on 127.0.0.1; resolves once it answers. */
export async function startUnbound(t: TestContext, zones: SignedZone[]): Promise<{ host: string; port: number }> {
  if (UNBOUND_SKIP) throw new Error(UNBOUND_SKIP);
  const dir = tmpdir(t, 'postern-unbound-');
  const run = (cmd: string, args: string[]): string => execFileSync(cmd, args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  const anchors: string[] = [];
  const authZones: string[] = [];
  for (const z of zones) {
    const file = join(dir, `${z.origin}.zone`);
    writeFileSync(
      file,
      [`$ORIGIN ${z.origin}.`, '$TTL 300', `@ IN SOA ns.${z.origin}. hostmaster.${z.origin}. 1 3600 600 86400 300`, `@ IN NS ns.${z.origin}.`, 'ns IN A 127.0.0.1', ...z.records, ''].join('\n'),
    );
    const ksk = run(KEYGEN!, ['-a', 'ECDSAP256SHA256', '-k', z.origin]);
    const zsk = run(KEYGEN!, ['-a', 'ECDSAP256SHA256', z.origin]);
    run(SIGNZONE!, ['-o', z.origin, file, ksk, zsk]);
    if (z.tamper) writeFileSync(`${file}.signed`, z.tamper(readFileSync(`${file}.signed`, 'utf8')));
    anchors.push(readFileSync(join(dir, `${ksk}.key`), 'utf8'));
    authZones.push(['auth-zone:', `  name: "${z.origin}"`, `  zonefile: "${file}.signed"`, '  for-downstream: no', '  for-upstream: yes', '  fallback-enabled: no'].join('\n'));
  }
  writeFileSync(join(dir, 'anchors.key'), anchors.join('\n'));
  const port = await freePort();
  const conf = join(dir, 'unbound.conf');
  writeFileSync(
    conf,
    [
      'server:',
      '  interface: 127.0.0.1',
      `  port: ${port}`,
      '  do-daemonize: no',
      '  username: ""',
      '  chroot: ""',
      `  directory: "${dir}"`,
      '  pidfile: ""',
      '  use-syslog: no',
      '  logfile: ""',
      '  verbosity: 0',
      `  trust-anchor-file: "${join(dir, 'anchors.key')}"`,
      '  module-config: "validator iterator"',
      '  do-not-query-localhost: no',
      // unbound answers .test itself (RFC 6761) unless told not to.
      '  local-zone: "test." nodefault',
      '  access-control: 127.0.0.0/8 allow',
      ...authZones,
      // Anything outside the test zones would go to the Internet's root servers: send it to a
      // closed loopback port instead (tests only ask inside the zones).
      'stub-zone:',
      '  name: "."',
      '  stub-addr: 127.0.0.1@9',
      'remote-control:',
      '  control-enable: no',
      '',
    ].join('\n'),
  );
  const daemon = spawnDaemon([UNBOUND!, '-d', '-c', conf], { stderrTail: 4000 });
  t.after(daemon.stop);
  const server = { host: '127.0.0.1', port };
  await waitUntilReady(daemon, () => query(server, zones[0]!.origin, TYPE.A, 500).then(() => true), {
    timeoutMs: 10_000,
    intervalMs: 100,
    failure: (err) => new Error(`unbound did not start: ${(err as Error).message}; ${daemon.stderr()}`, { cause: err }),
  });
  return server;
}
