// `npm run bench:filter`: the filter stage (src/filter/pool.ts) measured on its own, no SMTP.
//
//   classifier        SpamModel.score in this thread, no pool: the ceiling of one core
//   pool Nw, 1/worker FilterPool with N workers and the built-in spam filter, one message in flight
//                     per worker: no queueing, so total - filter is the hand-off's latency (two
//                     thread wake-ups, the transfers, composing)
//   pool Nw, saturated  SAT_PER_WORKER messages in flight per worker: the pool batches them
//                     (POSTERN_FILTER_BATCH), the throughput case
//   ... batch 1       the same load with one Piscina task per message (maxBatch 1), for comparison
//   pool 1w no-op     a filter module that only returns accept: the fixed cost per message
//
// The hand-off overhead, per message, against the time the filters took (mean filter ms):
//   latency   mean(total - filter) at one in flight per worker: what a single message waits
//   worker    workers / rate - mean filter: worker time per message spent outside the filters
//             (receiving, composing, Piscina) when the workers never wait for work
//   CPU       process CPU per message (all threads, this one included) - mean filter: every
//             cycle the pool costs on top of the filters, GC threads and the bench's own driving
//             included (it copies each message into a fresh buffer, as the acceptor makes one)
// Also: messages/s, MB/s, p50/p99 total ms, mean batch, the share of the workers' time spent
// in the filters, peak RSS (workers are threads, so they are in it) sampled every 20 ms, this
// thread's event-loop utilisation, and the verdicts. Prints a markdown table.
//
// Corpus: the SpamAssassin split (default /tmp/spam-eval, made by the spam evaluation
// kit's split.mjs --seed 1 from /tmp/spamdata) when present: the model is trained on train/, the pool is fed
// test/. Else a synthetic corpus. The model is written to a temp file for the workers.
//
// Knobs (environment):
//   BENCH_SECONDS     seconds per phase (10)
//   BENCH_MESSAGES    at most this many messages per phase (unbounded)
//   BENCH_WORKERS     comma list of pool sizes (1,2)
//   BENCH_CORPUS      auto | split | synthetic (auto)
//   BENCH_SPLIT       split folder (/tmp/spam-eval)
//   BENCH_SPAM_MODEL  a trained model file to use instead of training one
// Run: npx tsc -p tsconfig.json && npx tsc -p tsconfig.test.json && node build/bench/filter.js
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_MAX_BATCH, FilterPool, type FilterOutcome } from '../src/filter/pool.js';
import type { FilterEnvelope, Verdict } from '../src/filter/messages.js';
import { SpamModel } from '../src/filter/spam/model.js';
import { train } from '../src/filter/spam/train.js';
import type { TrainOptions } from '../src/filter/spam/train-options.js';
import { haveSplit, interleavedTest, readSplit } from './lib/split.js';

export interface FilterBenchOptions {
  /** Seconds per phase. */
  seconds: number;
  /** At most this many measured messages per phase. */
  messages: number;
  workers: number[];
  corpus: 'auto' | 'split' | 'synthetic';
  split: string;
  /** A model file to load instead of training. */
  model?: string;
  /** Messages run through each pool (and the classifier) before measuring. */
  warmup: number;
  log: (line: string) => void;
}

export interface PhaseResult {
  name: string;
  workers: number;
  inFlight: number;
  messages: number;
  bytes: number;
  seconds: number;
  msgPerS: number;
  mbPerS: number;
  /** The pool phases only (NaN for the classifier). */
  p50TotalMs: number;
  p99TotalMs: number;
  meanTotalMs: number;
  meanFilterMs: number;
  meanHandoffMs: number;
  /** mean(totalMs - filterMs) / mean(filterMs); NaN when filterMs is 0. */
  handoffRatio: number;
  /** Worker time per message outside the filters, ms: workers / rate - mean filterMs. */
  workerHandoffMs: number;
  /** CPU (all threads) per message outside the filters, ms: cpu per message - mean filterMs. */
  cpuHandoffMs: number;
  /** Messages per Piscina task. */
  meanBatch: number;
  /** rate x mean filterMs / workers: how much of the workers' time went into the filters. */
  filterShare: number;
  peakRssMB: number;
  /** Busy share of this (the acceptor's) thread's event loop during the phase. */
  mainElu: number;
  /** Process CPU time (all threads) per message, µs. */
  cpuUsPerMsg: number;
  verdicts: Partial<Record<Verdict['action'], number>>;
  /** Messages without an outcome (should stay 0). */
  missing: number;
}

export interface FilterBenchResult {
  corpus: { kind: 'split' | 'synthetic'; train: number; test: number; testMB: number };
  model: { kind: string; bits: number; fileBytes: number; memoryBytes: number; trainSeconds: number | null; loadMs: number };
  baselineRssMB: number;
  phases: PhaseResult[];
}

/** Messages in flight per worker in the saturated phases (batches form behind a busy worker). */
export const SAT_PER_WORKER = 128;

export const DEFAULT_OPTIONS: FilterBenchOptions = {
  seconds: 10,
  messages: Number.MAX_SAFE_INTEGER,
  workers: [1, 2],
  corpus: 'auto',
  split: '/tmp/spam-eval',
  warmup: 200,
  log: (l) => process.stderr.write(l + '\n'),
};

// ---- corpus ------------------------------------------------------------------------------------

/** Synthetic messages, as test/unit/spam.test.ts makes them (seeded, deterministic). */
export function synth(n: number, spam: boolean, seed: number): Buffer[] {
  const spamWords = ['viagra', 'winner', 'free', 'money', 'prize', 'click', 'offer', 'cheap', 'casino', 'loan'];
  const hamWords = ['meeting', 'patch', 'kernel', 'review', 'lunch', 'tuesday', 'build', 'release', 'thanks', 'agenda'];
  const shared = ['the', 'and', 'you', 'this', 'today', 'please', 'about', 'with'];
  let s = seed;
  const rnd = (k: number): number => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % k;
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const own = spam ? spamWords : hamWords;
    const words = Array.from({ length: 30 }, () => (rnd(3) === 0 ? own[rnd(own.length)]! : shared[rnd(shared.length)]!));
    const from = spam ? `deals${rnd(100)}@promo${rnd(5)}.example` : `dev${rnd(20)}@lists.example.org`;
    out.push(Buffer.from(`From: ${from}\r\nTo: me@example.net\r\nSubject: ${own[rnd(own.length)]} ${shared[rnd(shared.length)]}\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\nMessage-ID: <${i}@x>\r\n\r\n${words.join(' ')}\r\n`, 'latin1'));
  }
  return out;
}

interface Corpus { kind: 'split' | 'synthetic'; trainSpam: Buffer[]; trainHam: Buffer[]; test: Buffer[] }

function loadCorpus(o: FilterBenchOptions): Corpus {
  const found = haveSplit(o.split, 'test/spam', 'test/ham', 'train/spam', 'train/ham');
  if (o.corpus === 'split' && !found) throw new Error(`no split in ${o.split} (make it with the spam evaluation kit: node split.mjs --seed 1)`);
  if (o.corpus !== 'synthetic' && found) {
    const test = interleavedTest(o.split).messages;
    return { kind: 'split', trainSpam: readSplit(o.split, 'train/spam'), trainHam: readSplit(o.split, 'train/ham'), test };
  }
  if (o.corpus === 'auto') o.log(`no split in ${o.split}: using a synthetic corpus`);
  const test: Buffer[] = [];
  const ts = synth(100, true, 3), th = synth(100, false, 4);
  for (let i = 0; i < 100; i++) test.push(th[i]!, ts[i]!);
  return { kind: 'synthetic', trainSpam: synth(200, true, 1), trainHam: synth(300, false, 2), test };
}

// ---- measuring ---------------------------------------------------------------------------------

function quantile(sorted: Float64Array, q: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Samples the process RSS every 20 ms until stopped; returns the peak in MB. */
function rssSampler(): () => number {
  let peak = process.memoryUsage.rss();
  const t = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()); }, 20);
  return () => {
    clearInterval(t);
    peak = Math.max(peak, process.memoryUsage.rss());
    return peak / 1048576;
  };
}

/** A fresh body that owns its whole ArrayBuffer, as DataScanner.takeBody hands it over (it is transferred). */
function ownedCopy(src: Buffer): Buffer {
  const ab = new ArrayBuffer(src.length);
  new Uint8Array(ab).set(src);
  return Buffer.from(ab);
}

/** A fresh envelope per message, as the acceptor builds one for each (one shared object would cross once per batch). */
const envelope = (n: number): FilterEnvelope => ({
  sender: `bench${n % 100}@client.example`,
  recipients: ['rcpt@postern.example'],
  client: { ip: '192.0.2.1', helo: 'client.example', tls: false, trusted: false },
});
const PREFIX = 'Received: from client.example (client.example [192.0.2.1])\r\n\tby postern.example with ESMTP id BENCH; Mon, 1 Jan 2001 00:00:00 +0000\r\n';

function classifierPhase(model: SpamModel, test: Buffer[], o: FilterBenchOptions): PhaseResult {
  for (let i = 0; i < Math.min(o.warmup, test.length * 2); i++) model.score(test[i % test.length]!);
  const stop = rssSampler();
  const cpu0 = process.cpuUsage();
  let n = 0, bytes = 0, sink = 0;
  const t0 = performance.now();
  const deadline = t0 + o.seconds * 1000;
  // check the clock every message: a score takes far longer than performance.now()
  while (n < o.messages && performance.now() < deadline) {
    const b = test[n % test.length]!;
    sink += model.score(b);
    bytes += b.length;
    n++;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const peakRssMB = stop();
  if (!Number.isFinite(sink)) throw new Error('classifier returned a non-finite score');
  const meanFilterMs = (seconds * 1000) / n;
  return {
    name: 'classifier (this thread)', workers: 0, inFlight: 1, messages: n, bytes, seconds, msgPerS: n / seconds, mbPerS: bytes / 1e6 / seconds,
    p50TotalMs: NaN, p99TotalMs: NaN, meanTotalMs: meanFilterMs, meanFilterMs, meanHandoffMs: 0, handoffRatio: 0, workerHandoffMs: 0, cpuHandoffMs: (cpu.user + cpu.system) / n / 1000 - meanFilterMs, meanBatch: 1, filterShare: 1, peakRssMB, mainElu: 1, cpuUsPerMsg: (cpu.user + cpu.system) / n, verdicts: {}, missing: 0,
  };
}

async function poolPhase(name: string, pool: FilterPool, workers: number, inFlight: number, test: Buffer[], o: FilterBenchOptions): Promise<PhaseResult> {
  // warm-up: threads started, filter modules imported, model loaded, JIT warm
  const warm = Math.max(o.warmup, workers * 4);
  await drive(pool, inFlight, test, warm, Number.POSITIVE_INFINITY, () => {});
  const stop = rssSampler();
  const totals: number[] = [], filters: number[] = [];
  let batches = 0;
  const verdicts: PhaseResult['verdicts'] = {};
  let bytes = 0;
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  const sent = await drive(pool, inFlight, test, o.messages, t0 + o.seconds * 1000, (r, size) => {
    totals.push(r.totalMs);
    filters.push(r.filterMs);
    batches += 1 / r.batch; // a message in a batch of k is 1/k of a Piscina task
    verdicts[r.verdict.action] = (verdicts[r.verdict.action] ?? 0) + 1;
    bytes += size;
  });
  const seconds = (performance.now() - t0) / 1000;
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  const peakRssMB = stop();
  const n = totals.length;
  const sorted = Float64Array.from(totals).sort();
  const meanTotalMs = totals.reduce((a, b) => a + b, 0) / n;
  const meanFilterMs = filters.reduce((a, b) => a + b, 0) / n;
  const meanHandoffMs = meanTotalMs - meanFilterMs;
  const cpuUsPerMsg = (cpu.user + cpu.system) / n;
  return {
    name, workers, inFlight, messages: n, bytes, seconds, msgPerS: n / seconds, mbPerS: bytes / 1e6 / seconds,
    p50TotalMs: quantile(sorted, 0.5), p99TotalMs: quantile(sorted, 0.99), meanTotalMs, meanFilterMs, meanHandoffMs,
    handoffRatio: meanFilterMs > 0 ? meanHandoffMs / meanFilterMs : NaN,
    workerHandoffMs: (workers * seconds * 1000) / n - meanFilterMs,
    cpuHandoffMs: cpuUsPerMsg / 1000 - meanFilterMs,
    meanBatch: n / batches,
    filterShare: ((n / seconds) * meanFilterMs) / 1000 / workers,
    peakRssMB, mainElu: elu.utilization, cpuUsPerMsg, verdicts, missing: sent - n,
  };
}

/** Keeps `inFlight` messages in the pool until `limit` were sent or the deadline passed; returns how many were sent. */
async function drive(pool: FilterPool, inFlight: number, test: Buffer[], limit: number, deadline: number, done: (r: FilterOutcome, size: number) => void): Promise<number> {
  let sent = 0;
  const lane = async (): Promise<void> => {
    while (sent < limit && performance.now() < deadline) {
      const src = test[sent % test.length]!;
      const id = `b${sent++}`;
      const r = await pool.filter(id, envelope(sent), PREFIX, ownedCopy(src));
      done(r, src.length);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return sent;
}

// ---- the bench ---------------------------------------------------------------------------------

export async function runFilterBench(opts: Partial<FilterBenchOptions> = {}): Promise<FilterBenchResult> {
  const o: FilterBenchOptions = { ...DEFAULT_OPTIONS, ...opts };
  const work = mkdtempSync(join(tmpdir(), 'postern-bench-filter-'));
  try {
    const corpus = loadCorpus(o);
    let model: SpamModel;
    let trainSeconds: number | null = null;
    if (o.model) {
      model = SpamModel.deserialize(readFileSync(o.model));
    } else {
      o.log(`training on ${corpus.trainSpam.length} spam + ${corpus.trainHam.length} ham (${corpus.kind})...`);
      const t = performance.now();
      const topts: TrainOptions = corpus.kind === 'synthetic' ? { bits: 16, folds: 3 } : {};
      model = train(corpus.trainSpam, corpus.trainHam, topts);
      trainSeconds = (performance.now() - t) / 1000;
    }
    const modelFile = join(work, 'spam.model');
    const bytes = model.serialize();
    writeFileSync(modelFile, bytes);
    const tl = performance.now();
    model = SpamModel.deserialize(readFileSync(modelFile));
    const loadMs = performance.now() - tl;
    const size = 1 << model.header.bits;
    const memoryBytes = (model.header.kind !== 'chi' ? 4 * size * (model.header.views ?? 1) : 0) + (model.header.kind !== 'lr' ? 8 * size : 0);
    const noop = join(work, 'noop-filter.mjs');
    writeFileSync(noop, "export default function noop() { return { action: 'accept' }; }\n");
    const trainCount = corpus.trainSpam.length + corpus.trainHam.length;
    corpus.trainSpam.length = corpus.trainHam.length = 0; // let the training set go before measuring memory
    (globalThis as { gc?: () => void }).gc?.();
    const baselineRssMB = process.memoryUsage.rss() / 1048576;

    const phases: PhaseResult[] = [];
    o.log('classifier alone...');
    phases.push(classifierPhase(model, corpus.test, o));
    const spam = { model: modelFile, tagScore: null, rejectScore: null };
    const saturated = (w: number): number => SAT_PER_WORKER * w;
    for (const w of o.workers) {
      for (const maxBatch of [DEFAULT_MAX_BATCH, 1]) {
        const pool = new FilterPool({ workers: w, modules: [], spam, timeoutMs: 30_000, maxQueue: saturated(w), maxBatch });
        try {
          if (maxBatch > 1) {
            o.log(`pool ${w} worker(s), spam filter, 1 in flight per worker...`);
            phases.push(await poolPhase(`pool ${w}w spam, ${w} in flight`, pool, w, w, corpus.test, o));
          }
          o.log(`pool ${w} worker(s), spam filter, saturated, batch ${maxBatch}...`);
          phases.push(await poolPhase(`pool ${w}w spam, ${saturated(w)} in flight${maxBatch === 1 ? ', batch 1' : ''}`, pool, w, saturated(w), corpus.test, o));
        } finally {
          await pool.close();
        }
      }
    }
    const pool = new FilterPool({ workers: 1, modules: [noop], timeoutMs: 30_000, maxQueue: saturated(1) });
    try {
      o.log('pool 1 worker, no-op filter...');
      phases.push(await poolPhase('pool 1w no-op, 1 in flight', pool, 1, 1, corpus.test, o));
      phases.push(await poolPhase(`pool 1w no-op, ${saturated(1)} in flight`, pool, 1, saturated(1), corpus.test, o));
    } finally {
      await pool.close();
    }
    return {
      corpus: { kind: corpus.kind, train: trainCount, test: corpus.test.length, testMB: corpus.test.reduce((a, b) => a + b.length, 0) / 1e6 },
      model: { kind: model.header.kind, bits: model.header.bits, fileBytes: bytes.length, memoryBytes, trainSeconds, loadMs },
      baselineRssMB,
      phases,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const f = (x: number, d = 2): string => (Number.isFinite(x) ? x.toFixed(d) : '–');
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : '–');

export function formatResult(r: FilterBenchResult): string {
  const lines = [
    `corpus: ${r.corpus.kind}, ${r.corpus.train} train / ${r.corpus.test} test messages (${r.corpus.testMB.toFixed(2)} MB); model ${r.model.kind}, 2^${r.model.bits} buckets, file ${(r.model.fileBytes / 1e6).toFixed(2)} MB, weights in memory ${(r.model.memoryBytes / 1e6).toFixed(2)} MB per copy (one per worker), load ${r.model.loadMs.toFixed(1)} ms` +
      (r.model.trainSeconds !== null ? `, trained in ${r.model.trainSeconds.toFixed(1)} s` : ''),
    `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}); RSS before the phases ${r.baselineRssMB.toFixed(0)} MB`,
    '',
    '| phase | msg/s | MB/s | p50 total ms | p99 total ms | mean batch | mean filter ms | hand-off latency ms (/ filter) | hand-off worker time ms (/ filter) | hand-off CPU ms (/ filter) | filter share of worker time | main thread busy | peak RSS MB | verdicts |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const withRatio = (ms: number, filter: number): string => (Number.isFinite(ms) ? `${f(ms, 3)} (${filter > 0 ? pct(ms / filter) : '–'})` : '–');
  for (const p of r.phases) {
    const v = Object.entries(p.verdicts).map(([k, n]) => `${k} ${n}`).join(', ') || '–';
    const pool = p.workers > 0;
    // latency is only the hand-off's when nothing queues (one in flight per worker)
    const latency = pool && p.inFlight === p.workers ? withRatio(p.meanHandoffMs, p.meanFilterMs) : '–';
    const worker = pool ? withRatio(p.workerHandoffMs, p.meanFilterMs) : '–';
    lines.push(`| ${p.name} | ${p.msgPerS.toFixed(0)} | ${f(p.mbPerS)} | ${f(p.p50TotalMs, 3)} | ${f(p.p99TotalMs, 3)} | ${pool ? f(p.meanBatch, 1) : '–'} | ${f(p.meanFilterMs, 3)} | ${latency} | ${worker} | ${withRatio(p.cpuHandoffMs, p.meanFilterMs)} | ${pct(p.filterShare)} | ${pool ? pct(p.mainElu) : '–'} | ${p.peakRssMB.toFixed(0)} | ${v} |`);
  }
  return lines.join('\n');
}

function envOptions(): Partial<FilterBenchOptions> {
  const e = process.env;
  const o: Partial<FilterBenchOptions> = {};
  if (e.BENCH_SECONDS) o.seconds = Number(e.BENCH_SECONDS);
  if (e.BENCH_MESSAGES) o.messages = Number(e.BENCH_MESSAGES);
  if (e.BENCH_WORKERS) o.workers = e.BENCH_WORKERS.split(',').map(Number);
  if (e.BENCH_CORPUS) o.corpus = e.BENCH_CORPUS as FilterBenchOptions['corpus'];
  if (e.BENCH_SPLIT) o.split = e.BENCH_SPLIT;
  if (e.BENCH_SPAM_MODEL) o.model = e.BENCH_SPAM_MODEL;
  return o;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runFilterBench(envOptions());
  console.log(formatResult(r));
  const bad = r.phases.filter((p) => p.missing || p.verdicts.tempfail);
  if (bad.length) {
    console.error(`messages without a verdict or tempfailed in: ${bad.map((p) => p.name).join(', ')}`);
    process.exitCode = 1;
  }
}
