// relay-large: the relay scenario at bulk-mail sizes, 100 KiB and 1 MiB (BENCH_RELAY_SIZES,
// bytes), injected, relayed to the discarding sink and timed to the last receipt (bench/relay.ts's
// relayOnce). Messages per run shrink with the size so that a run moves at most
// BENCH_MESSAGES × 100 KiB: n = min(BENCH_MESSAGES, max(20, BENCH_MESSAGES × 100 KiB / size))
// (2,000 × 100 KiB and 195 × 1 MiB at the default 2,000). Besides msg/s it reports
// postern's peak resident memory (VmHWM of its one process: exact, unlike the sampled PSS of
// the peak mem column), the figure that shows whether memory grows with size × sessions, and
// its anonymous part (RssAnon, sampled): VmHWM also counts mapped files (node's own code, the LMDB
// pages postern's reads touched), which are the kernel's page cache, not memory postern holds.
import { interleave, kib, relayRun, relayTargets, type Knobs, type Measurement, type Scenario } from './common.js';

export function relayLargeMessages(k: Knobs, size: number): number {
  return Math.min(k.messages, Math.max(20, Math.floor((k.messages * 102400) / Math.max(1, size))));
}

function summary(m: Measurement): string | undefined {
  const rss = m.detail?.peakRssMiB;
  if (!m.ok || typeof rss !== 'number') return undefined;
  const main = m.detail?.mainThreadCpuMsPerMsg;
  const other = m.detail?.otherThreadsCpuMsPerMsg;
  const busy = m.detail?.machineBusyPct;
  const split = typeof main === 'number' && typeof other === 'number' ? `, CPU ms/msg main thread ${main.toFixed(2)} + other threads ${other.toFixed(2)}${typeof busy === 'number' ? `, machine ${busy.toFixed(0)} % busy (all cores, load and sink included)` : ''}` : '';
  const anon = m.detail?.peakAnonMiB;
  const anonText = typeof anon === 'number' ? `; anonymous ${anon.toFixed(0)} MiB, sampled every 250 ms, the rest is mapped files: node itself and LMDB's pages` : '';
  return `relay-large ${m.variant} ${m.target} run ${m.run}: ${Math.round(m.msgsPerSec)} msg/s, peak RSS ${rss.toFixed(0)} MiB (VmHWM${anonText}), ${m.messages} messages over ${m.detail?.connections as number} sessions${split}`;
}

export const relayLarge: Scenario = {
  name: 'relay-large',
  describe: (k) => `relay to a sink at bulk sizes: ${k.relaySizes.map((s) => `${relayLargeMessages(k, s)} × ${kib(s)}`).join(', ')}, 1 recipient, ${k.connections} inbound sessions, end to end, with postern's peak RSS`,
  targets: relayTargets,
  run: async (k: Knobs) => {
    const ms = await interleave(k, 'relay-large', k.relaySizes, relayTargets(k), kib, (size, t, run) =>
      relayRun(k, { scenario: 'relay-large', variant: kib(size), x: size, target: t, run, messages: relayLargeMessages(k, size), size, recipients: 1 }),
    );
    for (const m of ms) {
      if (m.detail) m.detail.connections = k.connections;
      const s = summary(m);
      if (s !== undefined && m.detail) m.detail.summary = s;
    }
    return ms;
  },
};
