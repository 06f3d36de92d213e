// contrib/systemd: the service and its socket units pass `systemd-analyze verify` without a
// warning, the service carries the hardening docs/operations.md promises and needs the sockets
// (named as postern takes them), and the example environment file is a configuration
// loadConfig accepts. Skipped, saying why, where systemd-analyze is not installed.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from '../helpers/tmpdir.js';
import { loadConfig } from '../../src/config/load.js';

const DIR = new URL('../../../contrib/systemd/', import.meta.url);
const UNIT = readFileSync(new URL('postern.service', DIR), 'utf8');
const ENV_FILE = readFileSync(new URL('postern.env', DIR), 'utf8');
const SOCKETS: Record<string, string> = {
  'postern.socket': readFileSync(new URL('postern.socket', DIR), 'utf8'),
  'postern-http.socket': readFileSync(new URL('postern-http.socket', DIR), 'utf8'),
};
const EXEC = '/usr/local/bin/postern';

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const SKIP = analyze.error ? `systemd-analyze is not installed (${analyze.error.message}); apt-get install systemd to run this check` : false;

/**
 * `systemd-analyze verify` on `text` saved as postern.service, with the socket units (as
 * `sockets` has them); ExecStart points at a stub.
 */
function verify(t: TestContext, text: string, sockets: Record<string, string> = SOCKETS): { status: number | null; output: string } {
  const dir = tmpdir(t);
  // verify checks that ExecStart's program exists and is executable: the installed command is
  // not there on a test machine, so a stub stands in at another path.
  const stub = join(dir, 'postern');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);
  assert.ok(text.includes(`ExecStart=${EXEC} start`), 'the unit starts the installed command');
  writeFileSync(join(dir, 'postern.service'), text.replace(`ExecStart=${EXEC}`, `ExecStart=${stub}`));
  for (const [name, body] of Object.entries(sockets)) writeFileSync(join(dir, name), body);
  const units = ['postern.service', ...Object.keys(sockets)].map((n) => join(dir, n));
  const r = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8', cwd: dir, timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/** The [Service] settings as key → values (a key may repeat). */
function serviceSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const body = text.split(/^\[Service\]$/m)[1]!.split(/^\[/m)[0]!;
  for (const line of body.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

test('systemd-analyze verify passes on contrib/systemd/postern.service and its sockets, with no warning', { skip: SKIP }, (t) => {
  const r = verify(t, UNIT);
  assert.equal(r.status, 0, r.output);
  assert.equal(r.output, '', 'no warning either (an unknown key is only a warning)');
});

test('the verify check sees a misspelt setting and a missing program (it can fail)', { skip: SKIP }, (t) => {
  const typo = verify(t, UNIT.replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes'));
  assert.match(typo.output, /Unknown key 'NoNewPrivilege'/);
  const socketTypo = verify(t, UNIT, { ...SOCKETS, 'postern.socket': SOCKETS['postern.socket']!.replace('FileDescriptorName=', 'FileDescriptorNames=') });
  assert.match(socketTypo.output, /Unknown key 'FileDescriptorNames'/);
  const noSocket = verify(t, UNIT, { 'postern.socket': SOCKETS['postern.socket']! });
  assert.match(noSocket.output, /postern-http\.socket/, 'a socket the service requires is missing');
  const dir = tmpdir(t);
  writeFileSync(join(dir, 'postern.service'), UNIT);
  const missing = spawnSync('systemd-analyze', ['verify', join(dir, 'postern.service')], { encoding: 'utf8', cwd: dir, timeout: 60_000 });
  assert.ok(missing.status !== 0 || /not executable|No such file/.test(missing.stderr), missing.stderr);
});

test('the unit has the hardening and the settings docs/operations.md lists', () => {
  const s = serviceSettings(UNIT);
  const one = (k: string): string | undefined => s.get(k)?.at(-1);
  assert.ok(['simple', 'notify'].includes(one('Type')!), `Type=${one('Type')}`);
  assert.equal(one('NoNewPrivileges'), 'yes');
  assert.equal(one('ProtectSystem'), 'strict');
  assert.equal(one('StateDirectory'), 'postern');
  assert.match(one('AmbientCapabilities')!, /\bCAP_NET_BIND_SERVICE\b/);
  assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE', 'no capability beyond binding port 25');
  assert.equal(one('EnvironmentFile'), '/etc/postern/postern.env');
  assert.ok(s.get('Environment')!.includes('POSTERN_DATA_DIR=/var/lib/postern/queue'), 'the queue in the state directory');
  assert.notEqual(one('User') ?? 'root', 'root');
  assert.equal(s.has('MemoryDenyWriteExecute'), false, "V8's JIT needs writable, executable pages");
  // os.networkInterfaces() (delivery's own-address check) reads the interfaces over netlink.
  assert.deepEqual(one('RestrictAddressFamilies')!.split(' ').sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
});

/** A unit's key=value lines in one section. */
function sectionSettings(text: string, section: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const body = text.split(new RegExp(`^\\[${section}\\]$`, 'm'))[1]?.split(/^\[/m)[0] ?? '';
  for (const line of body.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

test('the service needs its sockets, which carry the names postern takes and stay open across a restart', () => {
  const unit = sectionSettings(UNIT, 'Unit');
  const needs = (k: string): string[] => (unit.get(k) ?? []).flatMap((v) => v.split(' '));
  const env = Object.fromEntries([...ENV_FILE.matchAll(/^(POSTERN_[A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]));
  const expected: Record<string, { name: string; listen: string }> = {
    'postern.socket': { name: 'smtp', listen: `${env.POSTERN_SMTP_HOST}:${env.POSTERN_SMTP_PORT}` },
    'postern-http.socket': { name: 'http', listen: `${env.POSTERN_HTTP_HOST}:${env.POSTERN_HTTP_PORT}` },
  };
  for (const [file, want] of Object.entries(expected)) {
    assert.ok(needs('Requires').includes(file) && needs('After').includes(file), `the service Requires= and is After= ${file}`);
    const s = sectionSettings(SOCKETS[file]!, 'Socket');
    assert.deepEqual(s.get('FileDescriptorName'), [want.name], file);
    assert.deepEqual(s.get('ListenStream'), [want.listen], `${file} listens where postern.env says postern would`);
    assert.deepEqual(s.get('Service'), ['postern.service']);
    // PartOf= (or BindsTo=) to the service would close the socket on `systemctl restart postern`.
    for (const k of ['PartOf', 'BindsTo']) assert.equal(sectionSettings(SOCKETS[file]!, 'Unit').has(k), false, `${file} has no ${k}=`);
  }
});

test('contrib/systemd/postern.env is a configuration loadConfig accepts', () => {
  const env: Record<string, string> = {};
  for (const line of ENV_FILE.split('\n')) {
    const m = /^(POSTERN_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!;
  }
  assert.ok(Object.keys(env).length >= 4, JSON.stringify(env));
  const c = loadConfig({ ...env, POSTERN_DATA_DIR: '/var/lib/postern/queue' });
  assert.equal(c.smtpPort, 25);
  assert.equal(c.httpHost, '127.0.0.1');
});
