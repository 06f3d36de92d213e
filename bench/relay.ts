// Relay bench (`npm run bench:relay`): N messages injected over SMTP into a target, which
// relays them to a discarding sink on loopback that the bench starts; the figure is messages/s
// from the first injection to the last receipt at the sink. Targets: postern (durable LMDB
// queue, POSTERN_DELIVERY=routes, POSTERN_SMARTHOST=the sink) and a private Postfix
// (bench/peers/postfix-relay: durable queue files, relayhost=the sink, cached connections), run
// side by side and interleaved (postern, postfix, postern, postfix, ...), each run with a fresh
// target and a fresh sink. Per target: msg/s median (min–max), outbound connections opened
// (counted by the sink), CPU seconds of the target's processes, peak memory, messages left in
// its queue, problems from its log; and the ratio postern/Postfix.
//
// Knobs: BENCH_MESSAGES (20000), BENCH_SIZE (10240 payload bytes), BENCH_CONNECTIONS (20
// inbound sessions), BENCH_OUT_CONNECTIONS (20: postern's POSTERN_DEST_MAX_CONNECTIONS and
// Postfix's destination concurrency), BENCH_RECIPIENTS (1; N recipients per message, all at the
// sink), BENCH_RUNS (3), BENCH_CLIENT (smtp-source when installed, else loadgen),
// BENCH_SINK (smtp-sink when installed, else ours), BENCH_PEERS (postfix when installed;
// "none" for postern alone), BENCH_TIME_LIMIT_S (600 per run), BENCH_LABEL (results file name),
// BENCH_POSTERN_ENV ("K=V,K=V" extra postern settings), BENCH_POSTFIX_SET ("k=v;k=v" main.cf
// overrides). Loopback only; every load is bounded by its count and by the time limit.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpus, totalmem } from 'node:os';
import { startPostern } from './lib/postern.js';
import { freePort, machineCpu, MemorySampler, mainThreadCpuSeconds, statusKiB, treeCpuSeconds, pidAlive } from './lib/proc.js';
import { inject, haveSmtpSource, type ClientName, type InjectResult } from './lib/relay-inject.js';
import { startRelaySink, haveSmtpSink, type SinkName, type RelaySink } from './lib/relay-sink.js';
import { startPostfixRelay, havePostfix } from './lib/relay-postfix.js';
import { startHaraka } from './lib/haraka.js';

export interface RelayOptions {
  messages: number;
  size: number;
  connections: number;
  outConnections: number;
  recipients: number;
  timeLimitMs: number;
  client: ClientName;
  sink: SinkName;
  posternEnv: Record<string, string>;
  postfixSet: Record<string, string>;
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
const N = Number(process.env.BENCH_MESSAGES ?? 20000);
const SIZE = Number(process.env.BENCH_SIZE ?? 10240);
const CONNS = Number(process.env.BENCH_CONNECTIONS ?? 20);
const OUT_CONNS = Number(process.env.BENCH_OUT_CONNECTIONS ?? 20);
const RCPTS = Number(process.env.BENCH_RECIPIENTS ?? 1);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const TIME_LIMIT_MS = Number(process.env.BENCH_TIME_LIMIT_S ?? 600) * 1000;
const CLIENT = (process.env.BENCH_CLIENT ?? (haveSmtpSource() ? 'smtp-source' : 'loadgen')) as ClientName;
const SINK = (process.env.BENCH_SINK ?? (haveSmtpSink() ? 'smtp-sink' : 'ours')) as SinkName;
const PEERS = (process.env.BENCH_PEERS ?? (havePostfix() ? 'postfix' : 'none')).split(',').filter((p) => p && p !== 'none');
const LABEL = process.env.BENCH_LABEL ?? `${N}x${SIZE}-r${RCPTS}`;
const POSTERN_ENV: Record<string, string> = Object.fromEntries(
  (process.env.BENCH_POSTERN_ENV ?? '')
    .split(',')
    .filter((kv) => kv.includes('='))
    .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
);
const POSTFIX_SET: Record<string, string> = Object.fromEntries(
  (process.env.BENCH_POSTFIX_SET ?? '')
    .split(';')
    .filter((kv) => kv.includes('='))
    .map((kv) => [kv.slice(0, kv.indexOf('=')).trim(), kv.slice(kv.indexOf('=') + 1).trim()]),
);
const TO = 'sink@relay-sink.example';

if (isMain) validate();
function validate(): void {
if (!['smtp-source', 'loadgen'].includes(CLIENT)) throw new Error(`BENCH_CLIENT: smtp-source or loadgen, not ${CLIENT}`);
if (CLIENT === 'smtp-source' && !haveSmtpSource()) throw new Error('BENCH_CLIENT=smtp-source but /usr/sbin/smtp-source is not installed');
if (!['smtp-sink', 'ours'].includes(SINK)) throw new Error(`BENCH_SINK: smtp-sink or ours, not ${SINK}`);
if (SINK === 'smtp-sink' && !haveSmtpSink()) throw new Error('BENCH_SINK=smtp-sink but /usr/sbin/smtp-sink is not installed');
for (const p of PEERS) if (p !== 'postfix') throw new Error(`BENCH_PEERS: postfix or none, not ${p}`);
if (PEERS.includes('postfix') && !havePostfix()) throw new Error('BENCH_PEERS=postfix but Postfix is not installed');
if (!(N >= 1 && SIZE >= 0 && CONNS >= 1 && OUT_CONNS >= 1 && RCPTS >= 1 && RUNS >= 1)) throw new Error('bad knob value');
}
const CLI_OPTIONS: RelayOptions = { messages: N, size: SIZE, connections: CONNS, outConnections: OUT_CONNS, recipients: RCPTS, timeLimitMs: TIME_LIMIT_MS, client: CLIENT, sink: SINK, posternEnv: POSTERN_ENV, postfixSet: POSTFIX_SET };

export type RelayTargetName = 'postern' | 'postfix' | 'haraka';
type TargetName = RelayTargetName;

export interface RunResult {
  target: TargetName;
  run: number;
  injected: number;
  injectFailed: number;
  /** Messages (transactions) the sink received. */
  received: number;
  /** First injection to last receipt, ms (null: the sink did not get them all in time). */
  elapsedMs: number | null;
  msgsPerSec: number;
  injectMs: number;
  acceptPerSec: number;
  sinkConnections: number;
  cpuSeconds: number | null;
  /** postern: CPU seconds of its main thread (the rest of cpuSeconds is its other threads). */
  mainThreadCpuSeconds: number | null;
  sinkCpuSeconds: number | null;
  /** Share of the machine's CPU time (all cores, /proc/stat) busy during the run, %: whether every core was in use. */
  machineBusyPct: number | null;
  peakPssKiB: number;
  peakProcs: number;
  /** postern: VmHWM of its one process. */
  peakRssKiB: number | null;
  /** The target's sampled peak anonymous resident memory (RssAnon summed over its processes). */
  peakAnonKiB: number;
  leftInQueue: number | null;
  problems: string[];
  detail: Record<string, unknown>;
}

interface Running {
  pids(): number[];
  cpu(): number | null;
  /** The main thread's CPU seconds, for a one-process target (null otherwise). */
  mainCpu(): number | null;
  hwm(): number | null;
  /** Stop; what is left in its queue; problems from its log. */
  finish(): Promise<{ left: number | null; problems: string[]; detail: Record<string, unknown> }>;
}

async function startTarget(name: TargetName, sink: RelaySink, port: number, o: RelayOptions): Promise<Running> {
  if (name === 'postern') {
    const p = await startPostern({
      port,
      env: {
        POSTERN_DELIVERY: 'routes',
        POSTERN_SMARTHOST: `127.0.0.1:${sink.port}`,
        POSTERN_TLS_POLICY: 'none',
        POSTERN_DEST_MAX_CONNECTIONS: String(o.outConnections),
        ...o.posternEnv,
      },
    });
    return {
      pids: () => (pidAlive(p.pid) ? [p.pid] : []),
      cpu: () => treeCpuSeconds(p.pid, false),
      mainCpu: () => mainThreadCpuSeconds(p.pid),
      hwm: () => statusKiB(p.pid, 'VmHWM'),
      async finish() {
        const stop = await p.stop();
        const q = p.queueCounts();
        const problems = Object.entries(p.problems).map(([msg, n]) => `${n}× ${msg}`);
        if (stop.killed) problems.push('did not exit within 60 s of SIGTERM: killed');
        if (stop.exitCode !== 0 && !stop.killed) problems.push(`exit ${stop.exitCode} ${stop.signal}: ${p.stderrTail().slice(-300)}`);
        p.remove();
        return { left: q?.total ?? null, problems, detail: { shutdownMs: stop.shutdownMs, queue: q, logSamples: p.problemLines } };
      },
    };
  }
  if (name === 'haraka') {
    // bench/peers/haraka in relay mode: outbound on, every delivery to the sink, at most
    // outConnections deliveries at once (outbound.ini concurrency_max).
    const h = await startHaraka({ port, relay: { sinkPort: sink.port, concurrency: o.outConnections } });
    return {
      pids: () => (pidAlive(h.pid) ? [h.pid] : []),
      cpu: () => treeCpuSeconds(h.pid, false),
      mainCpu: () => mainThreadCpuSeconds(h.pid),
      hwm: () => statusKiB(h.pid, 'VmHWM'),
      async finish() {
        // A queue file goes once its delivery is answered: give outbound a moment to unlink.
        const deadline = Date.now() + 10_000;
        let files = h.queueFiles();
        while (files > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          files = h.queueFiles();
        }
        const stop = await h.stop();
        const problems = h.problems();
        if (stop.killed) problems.push('did not exit within 15 s of SIGTERM: killed');
        h.remove();
        return { left: files, problems, detail: { queueFiles: files } };
      },
    };
  }
  const pf = await startPostfixRelay({ port, sinkPort: sink.port, outConnections: o.outConnections, overrides: o.postfixSet });
  return {
    pids: () => pf.pids(),
    cpu: () => pf.cpuSeconds(),
    mainCpu: () => null,
    hwm: () => null,
    async finish() {
      // A message's queue file goes once all its recipients are done: give qmgr a moment.
      const deadline = Date.now() + 10_000;
      let files = pf.queueFiles();
      while (files.total > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        files = pf.queueFiles();
      }
      const sent = pf.countLog(/status=sent/);
      const deferred = pf.countLog(/status=deferred/);
      await pf.stop();
      const problems = pf.problems().map((l) => l.replace(/^.*?\/(\w+)\[\d+\]: /, '$1: '));
      pf.remove();
      return { left: files.total, problems, detail: { queueFiles: files, logStatusSent: sent, logStatusDeferred: deferred } };
    },
  };
}

/** One relay run: a fresh sink and a fresh target, o.messages injected, timed to the last receipt. */
export async function relayOnce(target: TargetName, run: number, o: RelayOptions = CLI_OPTIONS): Promise<RunResult> {
  const N = o.messages;
  const TIME_LIMIT_MS = o.timeLimitMs;
  const sink = await startRelaySink(o.sink);
  const port = await freePort();
  let t: Running | null = null;
  try {
    t = await startTarget(target, sink, port, o);
    const tgt = t;
    const sampler = new MemorySampler(() => tgt.pids(), 250);
    const cpu0 = t.cpu();
    const main0 = t.mainCpu();
    const sinkCpu0 = sink.cpuSeconds();
    const machine0 = machineCpu();
    const deadline = Date.now() + TIME_LIMIT_MS;
    const t0 = performance.now();
    const done = sink.reached(N, deadline);
    const inj: InjectResult = await inject(o.client, { port, messages: N, size: o.size, connections: o.connections, recipients: o.recipients, to: TO, timeLimitMs: TIME_LIMIT_MS });
    let tEnd: number | null;
    if (inj.accepted >= N) tEnd = await done;
    else {
      // Some injections failed: wait (bounded) for the ones accepted; the end time is then late.
      tEnd = await sink.reached(inj.accepted, Math.min(deadline, Date.now() + 60_000));
    }
    const cpu1 = t.cpu();
    const main1 = t.mainCpu();
    const sinkCpu1 = sink.cpuSeconds();
    const machine1 = machineCpu();
    sampler.stop();
    const hwm = t.hwm();
    const received = sink.messages();
    const sinkBytes = sink.bytes();
    const fin = await t.finish();
    t = null;
    // smtp-sink counts a session when it ends: wait until the count is steady after the stop.
    let conns = sink.sessions();
    for (let i = 0; i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const c = sink.sessions();
      if (c === conns && i >= 3) break;
      conns = c;
    }
    const elapsedMs = tEnd !== null ? tEnd - t0 : null;
    const problems = [...fin.problems, ...inj.errors.map((e) => `client: ${e}`)];
    if (tEnd === null) problems.push(`sink got ${received} of ${inj.accepted} within the time limit`);
    return {
      target,
      run,
      injected: inj.accepted,
      injectFailed: inj.failed,
      received,
      elapsedMs,
      msgsPerSec: elapsedMs !== null ? (inj.accepted / elapsedMs) * 1000 : 0,
      injectMs: inj.elapsedMs,
      acceptPerSec: (inj.accepted / inj.elapsedMs) * 1000,
      sinkConnections: conns,
      cpuSeconds: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null,
      mainThreadCpuSeconds: main0 !== null && main1 !== null ? main1 - main0 : null,
      sinkCpuSeconds: sinkCpu0 !== null && sinkCpu1 !== null ? sinkCpu1 - sinkCpu0 : null,
      machineBusyPct: machine0 && machine1 && machine1.total > machine0.total ? Math.round(((machine1.busy - machine0.busy) / (machine1.total - machine0.total)) * 1000) / 10 : null,
      peakPssKiB: sampler.peakKiB,
      peakProcs: sampler.peakProcs,
      peakRssKiB: hwm,
      peakAnonKiB: sampler.peakAnonKiB,
      leftInQueue: fin.left,
      problems,
      detail: { ...fin.detail, clientArgv: inj.argv, timedOut: inj.timedOut, sinkBytesPerMessage: sinkBytes !== null && received > 0 ? sinkBytes / received : null },
    };
  } finally {
    if (t) await t.finish().catch(() => undefined);
    await sink.close();
  }
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const mib = (kib: number) => (Number.isFinite(kib) ? (kib / 1024).toFixed(0) : 'n/a');

export { havePostfix, haveSmtpSource, haveSmtpSink };

async function main(): Promise<void> {
const targets: TargetName[] = ['postern', ...(PEERS as TargetName[])];
process.stderr.write(`relay bench: ${N} × ${SIZE} B, ${RCPTS} rcpt/msg, ${CONNS} inbound sessions (${CLIENT}), ${OUT_CONNS} outbound, sink ${SINK}, ${RUNS} runs of ${targets.join(', ')} interleaved\n`);
const results: RunResult[] = [];
for (let i = 1; i <= RUNS; i++) {
  for (const tg of targets) {
    const r = await relayOnce(tg, i);
    results.push(r);
    process.stderr.write(
      `run ${i}/${RUNS} ${tg}: ${f0(r.msgsPerSec)} msg/s end to end (${r.received}/${r.injected} at the sink, inject ${f0(r.acceptPerSec)} msg/s), ` +
        `${r.sinkConnections} outbound conns, cpu ${f1(r.cpuSeconds ?? NaN)} s, peak PSS ${mib(r.peakPssKiB)} MiB, left ${r.leftInQueue}` +
        (r.problems.length ? `, problems: ${r.problems.slice(0, 3).join(' | ')}` : '') +
        '\n',
    );
  }
}

interface Summary {
  target: TargetName;
  msgsPerSec: { median: number; min: number; max: number; runs: number[] };
  acceptPerSec: number;
  sinkConnections: number;
  cpuSeconds: number;
  cpuMsPerMsg: number;
  sinkCpuSeconds: number;
  peakPssMiB: number;
  peakRssMiB: number | null;
  peakProcs: number;
  leftInQueue: number[];
  problems: string[];
}
const summaries: Summary[] = targets.map((tg) => {
  const rs = results.filter((r) => r.target === tg);
  const rates = rs.map((r) => r.msgsPerSec);
  const cpu = median(rs.map((r) => r.cpuSeconds ?? NaN));
  return {
    target: tg,
    msgsPerSec: { median: median(rates), min: Math.min(...rates), max: Math.max(...rates), runs: rates.map((x) => Math.round(x)) },
    acceptPerSec: median(rs.map((r) => r.acceptPerSec)),
    sinkConnections: median(rs.map((r) => r.sinkConnections)),
    cpuSeconds: cpu,
    cpuMsPerMsg: (cpu * 1000) / N,
    sinkCpuSeconds: median(rs.map((r) => r.sinkCpuSeconds ?? NaN)),
    peakPssMiB: median(rs.map((r) => r.peakPssKiB)) / 1024,
    peakRssMiB: rs.every((r) => r.peakRssKiB !== null) ? median(rs.map((r) => r.peakRssKiB!)) / 1024 : null,
    peakProcs: Math.max(...rs.map((r) => r.peakProcs)),
    leftInQueue: rs.map((r) => r.leftInQueue ?? -1),
    problems: [...new Set(rs.flatMap((r) => r.problems))].slice(0, 10),
  };
});
const pst = summaries.find((s) => s.target === 'postern')!;
const pfx = summaries.find((s) => s.target === 'postfix');

console.log(`\n## relay: ${N} × ${SIZE} B, ${RCPTS} recipient(s)/message, ${CONNS} inbound sessions (${CLIENT}) → target → ${SINK} on loopback; ${RUNS} interleaved runs\n`);
console.log('| target | msg/s end to end, median (min–max) | inject msg/s | outbound conns opened | CPU s (ms/msg) | sink CPU s | peak PSS MiB (procs) | peak RSS MiB | left in queue | problems |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const s of summaries) {
  console.log(
    `| ${s.target} | **${f0(s.msgsPerSec.median)}** (${f0(s.msgsPerSec.min)}–${f0(s.msgsPerSec.max)}) | ${f0(s.acceptPerSec)} | ${f0(s.sinkConnections)} | ${f1(s.cpuSeconds)} (${f2(s.cpuMsPerMsg)}) | ${f1(s.sinkCpuSeconds)} | ${f0(s.peakPssMiB)} (${s.peakProcs}) | ${s.peakRssMiB !== null ? f0(s.peakRssMiB) : '—'} | ${s.leftInQueue.join(', ')} | ${s.problems.length ? s.problems.join('; ').slice(0, 200) : 'none'} |`,
  );
}
let ratio: number | null = null;
if (pfx) {
  ratio = pst.msgsPerSec.median / pfx.msgsPerSec.median;
  const perRun = results.filter((r) => r.target === 'postern').map((r) => {
    const peer = results.find((q) => q.target === 'postfix' && q.run === r.run);
    return peer && peer.msgsPerSec > 0 ? r.msgsPerSec / peer.msgsPerSec : NaN;
  });
  console.log(`\nratio postern/Postfix (medians): **${f2(ratio)}×** (per interleaved pair: ${perRun.map(f2).join(', ')}); CPU per message postern/Postfix: ${f2(pst.cpuMsPerMsg / pfx.cpuMsPerMsg)}×`);
}

const outDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `relay-${LABEL}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(
  file,
  JSON.stringify(
    {
      bench: 'relay',
      when: new Date().toISOString(),
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memMiB: Math.round(totalmem() / 2 ** 20), node: process.version },
      knobs: { messages: N, size: SIZE, connections: CONNS, outConnections: OUT_CONNS, recipients: RCPTS, runs: RUNS, client: CLIENT, sink: SINK, peers: PEERS, posternEnv: POSTERN_ENV, postfixSet: POSTFIX_SET },
      summaries,
      ratio,
      runs: results,
    },
    null,
    2,
  ) + '\n',
);
console.log(`\nJSON: ${file}`);
}

if (isMain) await main();
