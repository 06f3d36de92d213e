// fanout: messages with many recipients (BENCH_FANOUT_RECIPIENTS, 50), relayed to the sink —
// one message accepted, R deliveries made. Messages per run: BENCH_MESSAGES / 10 (at least 10),
// so the deliveries stay within the other scenarios' order of magnitude. The figure is
// messages/s end to end; deliveries/s (= × R) is in the JSON. Targets as in relay: postern,
// Postfix and Haraka (relay mode, bench/peers/haraka/README.md).
import { interleave, relayTargets, kib, relayRun, type Knobs, type Scenario } from './common.js';

export function fanoutMessages(k: Knobs): number {
  return Math.max(10, Math.floor(k.messages / 10));
}

export const fanout: Scenario = {
  name: 'fanout',
  describe: (k) => `fanout: ${fanoutMessages(k)} × ${kib(k.size)} with ${k.fanoutRecipients} recipients each, relayed to the sink, end to end`,
  targets: relayTargets,
  run: (k) => interleave(k, 'fanout', [k.fanoutRecipients], relayTargets(k), (r) => `${r} rcpts`, (r, t, run) => relayRun(k, { scenario: 'fanout', variant: `${r} rcpts`, x: r, target: t, run, messages: fanoutMessages(k), size: k.size, recipients: r })),
};
