// relay: end-to-end relay rate — BENCH_MESSAGES × BENCH_SIZE injected, relayed to a discarding
// sink on loopback (ours, or smtp-sink with BENCH_SINK=smtp-sink), timed from the first injection
// to the last receipt at the sink. bench/relay.ts's relayOnce (Postfix: bench/peers/postfix-relay;
// Haraka: bench/peers/haraka in relay mode, delivering to the sink through a get_mx plugin).
import { interleave, relayTargets, kib, relayRun, type Scenario } from './common.js';

export const relay: Scenario = {
  name: 'relay',
  describe: (k) => `relay to a sink: ${k.messages} × ${kib(k.size)}, 1 recipient, ${k.connections} inbound sessions, end to end`,
  targets: relayTargets,
  run: (k) => interleave(k, 'relay', [''], relayTargets(k), () => '', (_v, t, run) => relayRun(k, { scenario: 'relay', variant: '', x: null, target: t, run, messages: k.messages, size: k.size, recipients: 1 })),
};
