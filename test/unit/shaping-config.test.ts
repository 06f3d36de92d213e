// The shaping file (config/shaping.ts): the documented format parses into sites, defaults and
// per-source overrides; every problem is reported at once naming file:line (pinned); the
// starter file shipped in config/ parses; the watcher keeps the old version when a new one is
// broken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseShaping, lineOf, readShaping, ShapingFileWatcher, type ShapingFile } from '../../src/config/shaping.js';
import { loadConfig } from '../../src/config/load.js';
import { loadResources } from '../../src/config/resources.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';
import { repoRoot } from '../../bench/lib/postern.js';

const GOOD = `# comment
[defaults]
adaptive = true
rate = "100/s"

[site.google]
domains = ["gmail.com", "*.googlemail.example"]
mx = ["google.com", ".googlemail.com"]
max_connections = 10
messages_per_connection = 100
rate = "20/s"
recipients_per_transaction = 100
tls = "required"
retry = "1m,5m"
pipelining = false
chunking = false
suspend_on = ["Unusual Rate"]
suspend_for = "1h"
blocklist_suspend_for = "4h"

[site.google.source."192.0.2.10"]
rate = "5/s"
`;

function ok(text: string): ShapingFile {
  const r = parseShaping(text, 'f.toml');
  if (!r.ok) assert.fail(r.error.join('\n'));
  return r.value;
}

test('parseShaping: sites, defaults and per-source overrides, values parsed once', () => {
  const f = ok(GOOD);
  assert.deepEqual(f.defaults, { rate: 0.1, adaptive: true });
  assert.equal(f.sites.length, 1);
  const g = f.sites[0]!;
  assert.equal(g.name, 'google');
  assert.deepEqual(g.domains, ['gmail.com', '*.googlemail.example']);
  assert.deepEqual(g.mx, ['google.com', 'googlemail.com']);
  assert.deepEqual(g.limits, {
    maxConnections: 10,
    messagesPerConnection: 100,
    recipientsPerTransaction: 100,
    rate: 0.02,
    tls: 'required',
    retry: [60_000, 300_000],
    pipelining: false,
    chunking: false,
    suspendOn: ['unusual rate'],
    suspendForMs: 3_600_000,
    blocklistSuspendForMs: 14_400_000,
  });
  assert.deepEqual(g.sources.get('192.0.2.10'), { rate: 0.005 });
  assert.deepEqual(ok('').sites, []);
});

test('parseShaping: a syntax error names its line (pinned)', () => {
  assert.deepEqual(parseShaping('[site.a]\nmx = ["a.example"]\nrate = = 1\n', 'f.toml'), { ok: false, error: ['f.toml:3: Invalid TOML document: invalid value'] });
});

test('parseShaping: every bad value is reported at once with its line (pinned)', () => {
  const text = `[defaults]
rate = "fast"
nonsense = 1

[site.b]
mx = ["b.example"]
max_connections = 0
tls = "maybe"
retry = "5x"
suspend_for = 30
pipelining = "yes"

[site.c]
domains = ["not a domain"]

[site.d]
rate = "1/s"

[site.e]
domains = ["b.example", "dup.example"]
[site.f]
domains = ["dup.example"]
`;
  const r = parseShaping(text, 'f.toml');
  assert.ok(!r.ok);
  assert.deepEqual(r.error, [
    'f.toml:3: unknown key "nonsense"',
    'f.toml:2: rate "fast" is not a count per period; expected like 100/s, 6000/m, 10/h, 5/d or 50/5m',
    'f.toml:7: max_connections must be a whole number from 1 to 10000, got 0',
    'f.toml:8: tls must be one of opportunistic, required, none, got "maybe"',
    'f.toml:9: retry "5x" has bad delays ("5x"); expected comma-separated durations > 0 like 5m,10m,20m,40m,1h',
    'f.toml:11: pipelining must be true or false, got "yes"',
    'f.toml:10: suspend_for must be a duration like "30m" or "4h", got 30',
    'f.toml:14: "not a domain" is not a domain name or *.domain pattern',
    'f.toml:16: site "d" matches nothing: give "domains" or "mx"',
    'f.toml:22: domain "dup.example" is already in site "e"',
  ]);
});

test('parseShaping: unknown top-level keys and site tables of the wrong shape', () => {
  const r = parseShaping('sites = 1\nsite = 2\n', 'f.toml');
  assert.ok(!r.ok);
  assert.deepEqual(r.error, ['f.toml:1: unknown key "sites" (expected [defaults], [site.NAME], [source.NAME], [pool.NAME] and [alerts] tables)', 'f.toml:2: "site" must hold tables [site.NAME]']);
});

test('lineOf: keys in tables, quoted headers, and the header when the key is absent', () => {
  const text = '[a]\nx = 1\n\n[a."b.c"]\ny = 2\n"z" = 3\n';
  assert.equal(lineOf(text, ['a'], 'x'), 2);
  assert.equal(lineOf(text, ['a', 'b.c'], 'y'), 5);
  assert.equal(lineOf(text, ['a', 'b.c'], 'z'), 6);
  assert.equal(lineOf(text, ['a', 'b.c'], 'missing'), 4);
  assert.equal(lineOf(text, ['a'], 'b.c'), 4);
  assert.equal(lineOf(text, ['nowhere'], 'x'), 1);
});

test('the starter file config/shaping.example.toml parses, and every site has a rate and a connection limit', () => {
  const path = join(repoRoot(), 'config', 'shaping.example.toml');
  const f = readShaping(path);
  assert.ok(f.sites.length >= 4);
  for (const s of f.sites) {
    assert.ok(s.limits.rate !== undefined && s.limits.maxConnections !== undefined, s.name);
    assert.ok(s.mx.length > 0, `${s.name} matches by MX suffix`);
  }
  assert.ok(f.sites.some((s) => s.name === 'google' && s.mx.includes('google.com')));
  // Every value that claims a source names a public page.
  assert.match(readFileSync(path, 'utf8'), /https:\/\/support\.google\.com\//);
});

test('loadResources (start-up and `postern config`): a broken shaping file is a ConfigError naming the variable and the line', async (t) => {
  const dir = tmpdir(t);
  const path = join(dir, 'shaping.toml');
  writeFileSync(path, '[site.x]\nmx = ["x.example"]\nmax_connections = -1\n');
  const config = loadConfig({ POSTERN_SHAPING: path, POSTERN_DATA_DIR: join(dir, 'q') });
  await assert.rejects(loadResources(config), (err: Error) => err.message.includes(`POSTERN_SHAPING="${path}" is invalid: ${path}:3: max_connections must be a whole number from 1 to 10000, got -1`));
  assert.throws(() => readShaping(path), { code: 'PST_ERR_CONFIG_SHAPING' });
  writeFileSync(path, GOOD);
  const r = await loadResources(config);
  assert.equal(r.shaping?.sites[0]?.name, 'google');
});

test('ShapingFileWatcher: a changed file is re-read; a broken one is reported and the old kept', async (t) => {
  const dir = tmpdir(t);
  const path = join(dir, 'shaping.toml');
  writeFileSync(path, '[site.a]\nmx = ["a.example"]\n');
  const seen: Array<string | null> = [];
  const w = new ShapingFileWatcher(path, readShaping(path), (err, f) => seen.push(err ? err.message : f.sites.map((s) => s.name).join(',')));
  t.after(() => w.close());
  w.watch(20);
  writeFileSync(path, '[site.a]\nmx = ["a.example"]\n[site.bb]\nmx = ["b.example"]\n');
  await waitFor('the new version', () => seen.includes('a,bb'), 5000);
  assert.deepEqual(w.current.sites.map((s) => s.name), ['a', 'bb']);
  writeFileSync(path, '[site.a]\nmx = ["a.example"]\nrate = "x"\n# longer so the size changes\n');
  await waitFor('the error', () => seen.some((s) => s !== null && s.includes(':3: rate')), 5000);
  assert.deepEqual(w.current.sites.map((s) => s.name), ['a', 'bb'], 'the previous version stays');
});

test('parseShaping: the [alerts] table sets the anomaly-alert thresholds; bad values are reported with their line', () => {
  const ok = parseShaping('[alerts]\nwindow = "2m"\ndeferral_percent = 35\nbounce_percent = 5.5\nmin_recipients = 50\nbaseline_factor = 4\n', 'f.toml');
  assert.ok(ok.ok);
  assert.deepEqual(ok.value.alerts, { windowMs: 120_000, deferralRate: 0.35, bounceRate: 0.055, minSamples: 50, baselineFactor: 4 });
  const none = parseShaping('[defaults]\nrate = "1/s"\n', 'f.toml');
  assert.ok(none.ok);
  assert.equal(none.value.alerts, undefined);
  const bad = parseShaping('[alerts]\nwindow = "10ms"\ndeferral_percent = 0\nmin_recipients = 2.5\nthreshold = 1\n', 'f.toml');
  assert.ok(!bad.ok);
  assert.deepEqual(bad.error, [
    'f.toml:5: unknown key "threshold"',
    'f.toml:2: window must be a duration from "1s" to "1d", got "10ms"',
    'f.toml:3: deferral_percent must be a number from 1 to 100, got 0',
    'f.toml:4: min_recipients must be a whole number from 1 to 1000000, got 2.5',
  ]);
});

test('parseShaping: [alerts] takes the thresholds of the queue, TLS and filter rules; 0 turns a rule off; bad values by line', () => {
  const ok = parseShaping('[alerts]\ntls_failures = 0\nqueue_window = "5m"\nqueue_growth = 2000\nqueue_age = "6h"\nfilter_utilization_percent = 95\nfilter_wait = "2s"\nfilter_for = "30s"\n', 'f.toml');
  assert.ok(ok.ok);
  assert.deepEqual(ok.value.alerts, { tlsFailures: 0, queueWindowMs: 300_000, queueGrowth: 2000, queueAgeMs: 21_600_000, filterUtilization: 0.95, filterWaitMs: 2000, filterForMs: 30_000 });
  const bad = parseShaping('[alerts]\nqueue_window = "0s"\nqueue_growth = -1\nqueue_age = 3600\nfilter_utilization_percent = 101\nfilter_for = "2h"\n', 'f.toml');
  assert.ok(!bad.ok);
  assert.deepEqual(bad.error, [
    'f.toml:2: queue_window must be a duration from "1s" to "1d", got "0s"',
    'f.toml:4: queue_age must be a duration from "0s" (off) to "365d", got 3600',
    'f.toml:6: filter_for must be a duration from "1s" to "1h", got "2h"',
    'f.toml:3: queue_growth must be a whole number from 0 to 100000000, got -1',
    'f.toml:5: filter_utilization_percent must be a number from 0 to 100, got 101',
  ]);
});
