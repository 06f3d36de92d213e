// contrib/systemd: the unit passes `systemd-analyze verify` without a warning and carries the
// hardening docs/operations.md promises; the example environment file is a configuration
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
const EXEC = '/usr/local/bin/postern';

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const SKIP = analyze.error ? `systemd-analyze is not installed (${analyze.error.message}); apt-get install systemd to run this check` : false;

/** `systemd-analyze verify` on `text` saved as postern.service; ExecStart points at a stub. */
function verify(t: TestContext, text: string): { status: number | null; output: string } {
  const dir = tmpdir(t);
  // verify checks that ExecStart's program exists and is executable: the installed command is
  // not there on a test machine, so a stub stands in at another path.
  const stub = join(dir, 'postern');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);
  assert.ok(text.includes(`ExecStart=${EXEC} start`), 'the unit starts the installed command');
  writeFileSync(join(dir, 'postern.service'), text.replace(`ExecStart=${EXEC}`, `ExecStart=${stub}`));
  const r = spawnSync('systemd-analyze', ['verify', join(dir, 'postern.service')], { encoding: 'utf8', cwd: dir, timeout: 60_000 });
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

test('systemd-analyze verify passes on contrib/systemd/postern.service, with no warning', { skip: SKIP }, (t) => {
  const r = verify(t, UNIT);
  assert.equal(r.status, 0, r.output);
  assert.equal(r.output, '', 'no warning either (an unknown key is only a warning)');
});

test('the verify check sees a misspelt setting and a missing program (it can fail)', { skip: SKIP }, (t) => {
  const typo = verify(t, UNIT.replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes'));
  assert.match(typo.output, /Unknown key 'NoNewPrivilege'/);
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
