// `npm run bench`: the whole suite from one entry point.
//   node build/bench/index.js [--scenarios accept,relay,relay-large,single,filters,fanout,sizes,concurrency,depth,http,shaping,cluster]
//                             [--compare postfix] [--runs N]
// Each scenario (bench/scenarios/, one per file) runs postern and every peer named by
// --compare, interleaved (postern, postfix, postern, postfix, ...), each run on a fresh target;
// the report gives the median of the runs with min–max and the ratio postern/peer. Output: a
// markdown table on stdout, the raw measurements as JSON in bench/results/suite-*.json and an
// SVG chart beside it (suite-*.svg). A one-line live counter runs on a TTY, nothing otherwise.
//
// Knobs (environment): BENCH_MESSAGES (2000 per run), BENCH_SIZE (10240 payload bytes),
// BENCH_CONNECTIONS (20), BENCH_RUNS (3; --runs wins), BENCH_TIME_LIMIT_S (300 per load),
// BENCH_CLIENT (loadgen | smtp-source; loadgen by default), BENCH_FANOUT_RECIPIENTS (50),
// BENCH_FANOUT_MESSAGES (BENCH_MESSAGES),
// BENCH_SIZES (1024,10240,102400,1048576), BENCH_RELAY_SIZES (102400,1048576),
// BENCH_CONCURRENCY_LEVELS (1,10,100,1000),
// BENCH_DEPTH_LEVELS (0,100000; BENCH_DEPTH_1M=1 adds 1000000), BENCH_HTTP_REQUESTS
// (BENCH_MESSAGES), BENCH_SINK (ours | smtp-sink, relay and fanout), BENCH_OUT_CONNECTIONS (20),
// BENCH_SHAPING_MESSAGES (5000), BENCH_SHAPING_CONNECTIONS (5), BENCH_SHAPING_RATE (50 msg/s).
// Loopback only; every load is bounded by its message count and by the time limit.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SCENARIOS, type Knobs, type Measurement, type PeerName } from './scenarios/index.js';
import { Progress } from './lib/progress.js';
import { markdown, summarize, svg, type Row } from './lib/report.js';
import { repoRoot } from './lib/postern.js';
import { havePostfix } from './lib/postfix.js';
import { targetAvailable } from './lib/targets.js';
import { haveSmtpSource } from './lib/smtp-source.js';

export const SCENARIO_NAMES = SCENARIOS.map((s) => s.name);
const KNOWN_PEERS = ['postfix', 'haraka', 'smtp-server'];

export interface SuiteOptions {
  scenarios: string[];
  knobs: Knobs;
  /** Where the JSON and SVG go (bench/results by default). */
  outDir: string;
  /** Print the table and paths on stdout (the CLI) or stay silent (tests). */
  print: boolean;
  command?: string;
}

export interface SuiteResult {
  measurements: Measurement[];
  rows: Row[];
  markdown: string;
  svg: string;
  jsonFile: string;
  svgFile: string;
}

function num(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a number >= 0`);
  return n;
}

function list(name: string, dflt: number[]): number[] {
  const v = process.env[name];
  if (!v) return dflt;
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.some((x) => !Number.isFinite(x) || x < 0)) throw new Error(`${name}=${v}: a comma list of numbers`);
  return xs;
}

export function knobsFromEnv(peers: PeerName[], runs: number | null, progress: Progress): Knobs {
  const messages = Math.max(1, Math.floor(num('BENCH_MESSAGES', 2000)));
  const client = process.env.BENCH_CLIENT ?? 'loadgen';
  if (client !== 'loadgen' && client !== 'smtp-source') throw new Error(`BENCH_CLIENT=${client}: loadgen or smtp-source`);
  if (client === 'smtp-source' && !haveSmtpSource()) throw new Error('BENCH_CLIENT=smtp-source but smtp-source is not installed (scripts/install-peers.sh)');
  return {
    messages,
    size: Math.floor(num('BENCH_SIZE', 10240)),
    connections: Math.max(1, Math.floor(num('BENCH_CONNECTIONS', 20))),
    runs: Math.max(1, runs ?? Math.floor(num('BENCH_RUNS', 3))),
    peers,
    timeLimitMs: num('BENCH_TIME_LIMIT_S', 300) * 1000,
    client,
    fanoutRecipients: Math.max(1, Math.floor(num('BENCH_FANOUT_RECIPIENTS', 50))),
    fanoutMessages: Math.max(1, Math.floor(num('BENCH_FANOUT_MESSAGES', messages))),
    depthLevels: list('BENCH_DEPTH_LEVELS', process.env.BENCH_DEPTH_1M === '1' ? [0, 100_000, 1_000_000] : [0, 100_000]),
    concurrencyLevels: list('BENCH_CONCURRENCY_LEVELS', [1, 10, 100, 1000]).map((c) => Math.max(1, c)),
    sizes: list('BENCH_SIZES', [1024, 10240, 102400, 1048576]),
    relaySizes: list('BENCH_RELAY_SIZES', [102400, 1048576]),
    httpRequests: Math.max(1, Math.floor(num('BENCH_HTTP_REQUESTS', messages))),
    shaping: { messages: Math.max(1, Math.floor(num('BENCH_SHAPING_MESSAGES', 5000))), connections: Math.max(1, Math.floor(num('BENCH_SHAPING_CONNECTIONS', 5))), ratePerSec: Math.max(1, num('BENCH_SHAPING_RATE', 50)) },
    progress,
  };
}

export async function runSuite(o: SuiteOptions): Promise<SuiteResult> {
  const k = o.knobs;
  const chosen = o.scenarios.map((n) => {
    const s = SCENARIOS.find((x) => x.name === n);
    if (!s) throw new Error(`unknown scenario ${n}: ${SCENARIO_NAMES.join(', ')}`);
    return s;
  });
  const startedAt = new Date();
  const say = (s: string) => {
    if (!o.print) return;
    k.progress.clear();
    console.log(s);
  };
  say(`# postern bench suite — ${startedAt.toISOString()}`);
  say(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, node ${process.version}`);
  say(`targets: postern${k.peers.length ? ', ' + k.peers.join(', ') : ''}; ${k.runs} interleaved run(s) each; client ${k.client}\n`);
  const measurements: Measurement[] = [];
  for (const s of chosen) {
    const left = k.peers.filter((p) => !s.targets(k).includes(p));
    say(`- ${s.name}: ${s.describe(k)}${left.length ? ` (not ${left.join(', ')}: no such target for this scenario)` : ''}`);
    const ms = await s.run(k);
    measurements.push(...ms);
    for (const m of ms.filter((x) => !x.ok)) say(`  FAILED ${m.scenario} ${m.variant} ${m.target} run ${m.run}: ${m.error}`);
    for (const m of ms.filter((x) => x.ok && typeof x.detail?.summary === 'string')) say(`  ${m.detail!.summary as string}`);
  }
  k.progress.stop();
  const rows = summarize(measurements);
  const md = markdown(rows);
  const chart = svg(rows, `postern bench suite — ${startedAt.toISOString().slice(0, 16)}Z, ${cpus().length} CPUs`);
  mkdirSync(o.outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const jsonFile = join(o.outDir, `suite-${stamp}.json`);
  const svgFile = join(o.outDir, `suite-${stamp}.svg`);
  const knobs = { ...k, progress: undefined };
  writeFileSync(jsonFile, JSON.stringify({ bench: 'suite', startedAt: startedAt.toISOString(), command: o.command ?? null, machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), kernel: release(), node: process.version }, scenarios: o.scenarios, knobs, summary: rows, measurements }, null, 2) + '\n');
  writeFileSync(svgFile, chart);
  say('');
  say(md);
  say(`\nmsg/s: messages accepted (accept, sizes, concurrency, depth: 250 after the data, durable) or delivered to the sink (relay, fanout: first injection to last receipt) per second; http: 202s per second. postern/peer: ratio of the medians. CPU ms/msg: the target's processes. peak mem: PSS summed over the target's processes (accept path) or VmHWM (depth).`);
  say(`raw results: ${jsonFile}\nchart: ${svgFile}`);
  return { measurements, rows, markdown: md, svg: chart, jsonFile, svgFile };
}

const USAGE = `usage: node build/bench/index.js [--scenarios ${SCENARIO_NAMES.join(',')}] [--compare postfix,haraka,smtp-server] [--runs N]\n(knobs: see the head of bench/index.ts)`;

/** The suite's arguments, with node:util parseArgs as the postern command line (src/cli/args.ts). */
export function parseSuiteArgs(argv: string[]): { scenarios: string[]; peers: PeerName[]; runs: number | null; help: boolean } {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, strict: true, allowPositionals: false, options: { scenarios: { type: 'string' }, compare: { type: 'string' }, runs: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${USAGE}`, { cause: err });
  }
  if (values.help === true) return { scenarios: [], peers: [], runs: null, help: true };
  const scenarios = values.scenarios !== undefined ? values.scenarios.split(',').map((s) => s.trim()).filter(Boolean) : SCENARIO_NAMES;
  const peers = values.compare !== undefined ? values.compare.split(',').map((s) => s.trim()).filter((s) => s && s !== 'postern') : [];
  let runs: number | null = null;
  if (values.runs !== undefined) {
    const n = Number(values.runs);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--runs ${values.runs}: an integer >= 1`);
    runs = n;
  }
  for (const s of scenarios) if (!SCENARIO_NAMES.includes(s)) throw new Error(`unknown scenario ${s}: ${SCENARIO_NAMES.join(', ')}`);
  for (const p of peers) {
    if (!KNOWN_PEERS.includes(p)) throw new Error(`--compare: unknown peer ${p} (${KNOWN_PEERS.join(', ')})`);
    if (p === 'postfix' && !havePostfix()) throw new Error('--compare postfix, but Postfix is not installed: run scripts/install-peers.sh');
    if ((p === 'haraka' || p === 'smtp-server') && !targetAvailable(p)) throw new Error(`--compare ${p}, but it is not installed in bench/.peers: run scripts/install-peers.sh`);
  }
  return { scenarios, peers: peers as PeerName[], runs, help: false };
}

async function main(): Promise<void> {
  const a = parseSuiteArgs(process.argv.slice(2));
  if (a.help) {
    console.log(USAGE);
    return;
  }
  const progress = new Progress();
  const knobs = knobsFromEnv(a.peers, a.runs, progress);
  const env = Object.entries(process.env).filter(([key]) => key.startsWith('BENCH_')).map(([key, v]) => `${key}=${v}`).join(' ');
  const command = `${env ? env + ' ' : ''}node build/bench/index.js ${process.argv.slice(2).join(' ')}`.trim();
  const r = await runSuite({ scenarios: a.scenarios, knobs, outDir: join(repoRoot(), 'bench', 'results'), print: true, command });
  if (r.measurements.some((m) => !m.ok)) process.exitCode = 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(2);
  });
}
