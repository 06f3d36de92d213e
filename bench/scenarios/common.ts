// What every scenario of the suite (bench/index.ts) shares: the knobs, one measurement, the
// scenario interface, and the two ways a run is made — the accept path (bench/accept.ts's
// timedRun: a fresh target per run, our loadgen or smtp-source as the client) and the relay path
// (bench/relay.ts's relayOnce: a fresh sink and target per run, timed to the last receipt).
// Runs are interleaved: for each variant, run 1 of every target, then run 2, ... (A B A B).
import { timedRun, type Settings } from '../accept.js';
import { relayOnce, type RelayOptions } from '../relay.js';
import type { TargetName } from '../lib/targets.js';
import type { Progress } from '../lib/progress.js';

export type PeerName = 'postfix' | 'haraka' | 'smtp-server';
export type SuiteTarget = 'postern' | PeerName;

export interface Knobs {
  /** Messages per run (BENCH_MESSAGES). */
  messages: number;
  /** Payload bytes (BENCH_SIZE). */
  size: number;
  /** Client connections (BENCH_CONNECTIONS). */
  connections: number;
  /** Interleaved runs per target and variant. */
  runs: number;
  /** The peers to compare with (postern always runs). */
  peers: PeerName[];
  /** Time limit of one load, ms. */
  timeLimitMs: number;
  client: 'loadgen' | 'smtp-source';
  /** Recipients per message in the fanout scenario (BENCH_FANOUT_RECIPIENTS). */
  fanoutRecipients: number;
  /** Messages per run of the fanout scenario (BENCH_FANOUT_MESSAGES; default BENCH_MESSAGES). */
  fanoutMessages: number;
  /** Queue depths of the depth scenario (BENCH_DEPTH_LEVELS; 1M with BENCH_DEPTH_1M=1). */
  depthLevels: number[];
  /** Client connection counts of the concurrency scenario (BENCH_CONCURRENCY_LEVELS). */
  concurrencyLevels: number[];
  /** Payload sizes of the sizes scenario (BENCH_SIZES, bytes). */
  sizes: number[];
  /** Payload sizes of the relay-large scenario (BENCH_RELAY_SIZES, bytes). */
  relaySizes: number[];
  /** Requests of the http scenario (BENCH_HTTP_REQUESTS; default BENCH_MESSAGES). */
  httpRequests: number;
  /** The shaping scenario: messages (BENCH_SHAPING_MESSAGES), and the provider's limits (BENCH_SHAPING_CONNECTIONS, BENCH_SHAPING_RATE per second). */
  shaping: { messages: number; connections: number; ratePerSec: number };
  progress: Progress;
}

export interface Measurement {
  scenario: string;
  /** The level within the scenario: "10 KiB", "100 conns", "depth 100000", "" for none. */
  variant: string;
  /** Numeric x of the variant (size, connections, depth), for charts. */
  x: number | null;
  target: SuiteTarget;
  run: number;
  ok: boolean;
  error?: string;
  /** The figure compared: messages/s (or requests/s for http). */
  msgsPerSec: number;
  mbPerSec: number | null;
  elapsedMs: number;
  accepted: number;
  messages: number;
  cpuMsPerMsg: number | null;
  peakMemMiB: number | null;
  detail?: Record<string, unknown>;
}

export interface Scenario {
  readonly name: string;
  /** One line: what is measured, at the knobs given. */
  describe(k: Knobs): string;
  /** The targets it can measure (some are postern-only). */
  targets(k: Knobs): SuiteTarget[];
  run(k: Knobs): Promise<Measurement[]>;
}

export function allTargets(k: Knobs): SuiteTarget[] {
  return ['postern', ...k.peers];
}

/** The peers with a relay-path target (bench/relay.ts's relayOnce): Postfix and Haraka. */
export const RELAY_PEERS: readonly PeerName[] = ['postfix', 'haraka'];

/** The relay and fanout scenarios' targets: postern and the peers that have a relay target
 * (smtp-server is accept-path only: it is left out of these two scenarios, which the suite's
 * header says). */
export function relayTargets(k: Knobs): SuiteTarget[] {
  return ['postern', ...k.peers.filter((p) => RELAY_PEERS.includes(p))];
}

/** For each variant: run 1 of each target, run 2 of each, ... (targets interleaved). */
export async function interleave<V>(k: Knobs, scenario: string, variants: V[], targets: SuiteTarget[], label: (v: V) => string, one: (v: V, t: SuiteTarget, run: number) => Promise<Measurement>): Promise<Measurement[]> {
  const out: Measurement[] = [];
  const total = variants.length * targets.length * k.runs;
  let step = 0;
  for (const v of variants) {
    for (let run = 1; run <= k.runs; run++) {
      for (const t of targets) {
        step++;
        k.progress.stage(`${scenario}${label(v) ? ' ' + label(v) : ''} · ${t} run ${run}/${k.runs} · step ${step}/${total}`);
        const m = await one(v, t, run);
        out.push(m);
        k.progress.done(m);
      }
    }
  }
  return out;
}

/** The accept path: bench/accept.ts's timedRun, fresh target, every 250 checked against the queue. */
export async function acceptRun(k: Knobs, o: { scenario: string; variant: string; x: number | null; target: SuiteTarget; run: number; messages: number; size: number; connections: number; postfixOverrides?: Record<string, string>; posternEnv?: Record<string, string> }): Promise<Measurement> {
  const s: Settings = {
    scenario: o.scenario,
    messages: o.messages,
    size: o.size,
    connections: o.connections,
    runs: k.runs,
    client: k.client,
    reuse: true,
    targets: [o.target as TargetName],
    timeLimitMs: k.timeLimitMs,
    strace: false,
    straceMessages: 0,
    noisyRetries: 0,
    postfixOverrides: o.postfixOverrides ?? {},
    posternEnv: o.posternEnv ?? {},
  };
  const r = await timedRun(o.run, o.target as TargetName, s, null, null);
  return {
    scenario: o.scenario,
    variant: o.variant,
    x: o.x,
    target: o.target,
    run: o.run,
    ok: r.ok,
    ...(r.error !== undefined ? { error: r.error } : {}),
    msgsPerSec: r.msgsPerSec,
    mbPerSec: r.mbPerSec,
    elapsedMs: r.elapsedMs,
    accepted: r.accepted,
    messages: o.messages,
    cpuMsPerMsg: r.targetCpuSeconds !== null && r.accepted > 0 ? (r.targetCpuSeconds * 1000) / r.accepted : null,
    peakMemMiB: r.peakMemKiB > 0 ? r.peakMemKiB / 1024 : null,
    detail: {
      mainThreadCpuMsPerMsg: typeof r.targetMainThreadCpuSeconds === 'number' && r.accepted > 0 ? (r.targetMainThreadCpuSeconds * 1000) / r.accepted : null,
      otherThreadsCpuMsPerMsg: typeof r.targetMainThreadCpuSeconds === 'number' && r.targetCpuSeconds !== null && r.accepted > 0 ? ((r.targetCpuSeconds - r.targetMainThreadCpuSeconds) * 1000) / r.accepted : null,
      noisy: r.noisy, machineBusyPct: r.machineBusyPct, otherCpuSeconds: r.otherCpuSeconds, stored: r.finished?.stored ?? null, problems: r.finished?.problems ?? [], latencyMs: r.latencyMs ?? null },
  };
}

/** The relay path: bench/relay.ts's relayOnce, timed from the first injection to the last receipt at the sink. */
export async function relayRun(k: Knobs, o: { scenario: string; variant: string; x: number | null; target: SuiteTarget; run: number; messages: number; size: number; recipients: number; connections?: number; posternEnv?: Record<string, string> }): Promise<Measurement> {
  const ro: RelayOptions = {
    messages: o.messages,
    size: o.size,
    connections: o.connections ?? k.connections,
    outConnections: Number(process.env.BENCH_OUT_CONNECTIONS ?? 20),
    recipients: o.recipients,
    timeLimitMs: k.timeLimitMs,
    client: k.client,
    sink: (process.env.BENCH_SINK as RelayOptions['sink'] | undefined) ?? 'ours',
    posternEnv: o.posternEnv ?? {},
    postfixSet: {},
  };
  if (o.target !== 'postern' && !RELAY_PEERS.includes(o.target)) return failed(o, `${o.target}: no relay-path target yet (accept, sizes and concurrency only); see BENCHMARKS.md`);
  try {
    const r = await relayOnce(o.target as 'postern' | 'postfix' | 'haraka', o.run, ro);
    const ok = r.elapsedMs !== null && r.injected === o.messages && r.received >= o.messages && (r.leftInQueue ?? 0) === 0;
    return {
      scenario: o.scenario,
      variant: o.variant,
      x: o.x,
      target: o.target,
      run: o.run,
      ok,
      ...(ok ? {} : { error: `injected ${r.injected}/${o.messages}, received ${r.received}, left ${r.leftInQueue}: ${r.problems.slice(0, 3).join(' | ')}` }),
      msgsPerSec: r.msgsPerSec,
      mbPerSec: (r.msgsPerSec * o.size) / 1e6,
      elapsedMs: r.elapsedMs ?? NaN,
      accepted: r.injected,
      messages: o.messages,
      cpuMsPerMsg: r.cpuSeconds !== null && r.injected > 0 ? (r.cpuSeconds * 1000) / r.injected : null,
      peakMemMiB: r.peakPssKiB > 0 ? r.peakPssKiB / 1024 : null,
      // peakRssMiB: postern's VmHWM (exact, one process); null for the multi-process peers,
      // whose figure is the sampled PSS sum in peakMemMiB.
      detail: {
        // The split between postern's main thread and its other threads (both cores in use?).
        mainThreadCpuMsPerMsg: r.mainThreadCpuSeconds !== null && r.injected > 0 ? (r.mainThreadCpuSeconds * 1000) / r.injected : null,
        otherThreadsCpuMsPerMsg: r.mainThreadCpuSeconds !== null && r.cpuSeconds !== null && r.injected > 0 ? ((r.cpuSeconds - r.mainThreadCpuSeconds) * 1000) / r.injected : null,
        machineBusyPct: r.machineBusyPct,
        recipients: o.recipients, deliveriesPerSec: r.msgsPerSec * o.recipients, received: r.received, sinkConnections: r.sinkConnections, acceptPerSec: r.acceptPerSec, sinkBytesPerMessage: r.detail.sinkBytesPerMessage ?? null, peakRssMiB: r.peakRssKiB !== null ? r.peakRssKiB / 1024 : null, peakAnonMiB: r.peakAnonKiB / 1024, problems: r.problems.slice(0, 5) },
    };
  } catch (err) {
    return failed(o, (err as Error).message);
  }
}

export function failed(o: { scenario: string; variant: string; x: number | null; target: SuiteTarget; run: number; messages: number }, error: string): Measurement {
  return { scenario: o.scenario, variant: o.variant, x: o.x, target: o.target, run: o.run, ok: false, error, msgsPerSec: 0, mbPerSec: null, elapsedMs: 0, accepted: 0, messages: o.messages, cpuMsPerMsg: null, peakMemMiB: null };
}

export function kib(bytes: number): string {
  return bytes >= 1 << 20 ? `${bytes / (1 << 20)} MiB` : bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
}
