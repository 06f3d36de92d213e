// Spam classifier benchmark: trains and classifies one split (default seed 1, see
// the spam evaluation kit's protocol) through the command line, as separate processes, and prints the
// metrics table beside bogofilter's (through the kit's adapters/bogofilter.sh, tuned
// with bogotune) when bogofilter is installed. The official figures come from eval.sh; this
// is the quick, single-repetition view.
// Run: npx tsc -p tsconfig.test.json && node build/bench/spam.js
// Knobs: BENCH_SEED (1), BENCH_SPLIT (/tmp/spam-eval for seed 1, /tmp/spam-eval-N otherwise;
// made by scripts/spam-corpus.mjs from the corpus in /tmp/spamdata when missing, as `postern
// spam eval` makes it), SPAM_TOOLS (the evaluation kit's folder, for its adapters/; no default:
// without it bogofilter is skipped), BENCH_BOGO (tuned | plain | off; default tuned).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { listFiles, defaultSplitDir, ensureSplit } from '../src/filter/spam/cli.js';
import { metrics, formatTable, type Item, type Metrics } from '../src/filter/spam/metrics.js';

const seed = process.env.BENCH_SEED ?? '1';
const split = resolve(process.env.BENCH_SPLIT ?? defaultSplitDir(seed));
const tools = process.env.SPAM_TOOLS === undefined ? null : resolve(process.env.SPAM_TOOLS);
const bogoMode = process.env.BENCH_BOGO ?? 'tuned';
const here = dirname(fileURLToPath(import.meta.url));
const bin = join(here, '..', 'src', 'filter', 'spam', 'bin.js');

interface Timed { wall: number; cpu: number | null; rssMB: number | null; stdout: string }

/** Runs a bash command with stdin from a file; wall time, and CPU/RSS through /usr/bin/time when present. */
function run(cmd: string, stdinFile: string | null): Timed {
  const timeFile = join(work, 'time.txt');
  const useTime = existsSync('/usr/bin/time');
  const full = useTime ? `/usr/bin/time -o ${timeFile} -f '%U %S %M' bash -c ${JSON.stringify(cmd)}` : cmd;
  const t0 = performance.now();
  const r = spawnSync('bash', ['-c', stdinFile ? `${full} < ${stdinFile}` : full], { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'inherit'] });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`command failed (${r.status}): ${cmd}`);
  let cpu: number | null = null, rssMB: number | null = null;
  if (useTime) {
    const [u, s, m] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    cpu = u! + s!;
    rssMB = m! / 1024;
  }
  return { wall, cpu, rssMB, stdout: r.stdout.toString('utf8') };
}

function score(stdout: string, truthOf: Map<string, 'spam' | 'ham'>): Metrics {
  const items: Item[] = [];
  for (const line of stdout.split('\n')) {
    if (!line) continue;
    const [p, label, s] = line.split('\t');
    const truth = truthOf.get(p!);
    if (!truth || !label || s === undefined) throw new Error(`bad output line: ${line}`);
    const name = p!.slice(p!.lastIndexOf('/') + 1);
    items.push({ truth, group: name.slice(0, name.indexOf('.')), label: label as Item['label'], score: Number(s) });
  }
  if (items.length !== truthOf.size) throw new Error(`expected ${truthOf.size} lines, got ${items.length}`);
  return metrics(items);
}

await ensureSplit(seed, split, undefined, undefined);

const work = mkdtempSync(join(tmpdir(), 'postern-bench-spam-'));
try {
  const truthOf = new Map<string, 'spam' | 'ham'>();
  for (const t of ['spam', 'ham'] as const) for (const p of listFiles(join(split, 'test', t))) truthOf.set(p, t);
  const list = join(work, 'test.list');
  writeFileSync(list, [...truthOf.keys()].join('\n') + '\n');
  const testMB = [...truthOf.keys()].reduce((a, p) => a + statSync(p).size, 0) / 1e6;
  const rows: Array<[string, Metrics]> = [];
  const speed: string[] = [];
  const note = (name: string, tr: Timed, cl: Timed, modelBytes: number): void => {
    const n = truthOf.size;
    speed.push(`${name}: train ${tr.wall.toFixed(1)} s wall${tr.cpu !== null ? `, ${tr.cpu.toFixed(1)} CPU s` : ''}; ` +
      `classify ${n} msgs (${testMB.toFixed(2)} MB) ${cl.wall.toFixed(2)} s wall = ${Math.round(n / cl.wall)} msgs/s` +
      (cl.cpu !== null ? `, ${cl.cpu.toFixed(2)} CPU s = ${Math.round(n / cl.cpu)} msgs/CPU-s, peak RSS ${cl.rssMB!.toFixed(0)} MB` : '') +
      `; model ${(modelBytes / 1e6).toFixed(2)} MB (start-up and model load included)`);
  };

  const model = join(work, 'postern.model');
  const tr = run(`${JSON.stringify(process.execPath)} ${bin} train ${join(split, 'train', 'spam')} ${join(split, 'train', 'ham')} --model ${model}`, null);
  const cl = run(`${JSON.stringify(process.execPath)} ${bin} classify --model ${model}`, list);
  rows.push(['postern (lr)', score(cl.stdout, truthOf)]);
  note('postern', tr, cl, statSync(model).size);

  const adapter = tools === null ? '' : join(tools, 'adapters', 'bogofilter.sh');
  const haveBogo = spawnSync('bash', ['-c', 'command -v bogofilter && command -v bogotune'], { stdio: 'ignore' }).status === 0;
  if (bogoMode !== 'off' && haveBogo && adapter !== '' && existsSync(adapter)) {
    const bmodel = join(work, 'bogo.model');
    const how = bogoMode === 'plain' ? 'train' : 'train-tuned';
    const btr = run(`${adapter} ${how} ${join(split, 'train', 'spam')} ${join(split, 'train', 'ham')} ${bmodel}`, null);
    const bcl = run(`${adapter} classify ${bmodel}`, list);
    rows.push([`bogofilter (${bogoMode === 'plain' ? 'defaults' : 'bogotune'})`, score(bcl.stdout, truthOf)]);
    const du = spawnSync('du', ['-sb', bmodel]).stdout.toString().split('\t')[0];
    note('bogofilter', btr, bcl, Number(du));
  } else if (bogoMode !== 'off') {
    speed.push('bogofilter: not installed (apt-get install bogofilter) or adapter not found; skipped');
  }

  console.log(`split ${split} (seed ${seed}); test ${truthOf.size} messages; one repetition, not blinded (eval.sh is the official run)`);
  console.log(formatTable(rows));
  for (const s of speed) console.log(s);
} finally {
  rmSync(work, { recursive: true, force: true });
}
