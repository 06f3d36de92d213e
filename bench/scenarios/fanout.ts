// fanout: messages with many recipients (BENCH_FANOUT_RECIPIENTS, 50), relayed to the sink —
// one message accepted, R deliveries made. Messages per run: BENCH_FANOUT_MESSAGES (default
// BENCH_MESSAGES). It was BENCH_MESSAGES / 10 (200 by default): a run of under a second, which
// measured start-up and a cold JIT more than fanout (2026-12-07: 247 msg/s at 200 messages,
// 433-548 at 2,000 on the same machine; Postfix 96-109 either way). The figure is
// messages/s end to end; deliveries/s (= × R) is in the JSON. Targets as in relay: postern,
// Postfix and Haraka (relay mode, bench/peers/haraka/README.md).
import { interleave, relayTargets, kib, relayRun, type Knobs, type Scenario } from './common.js';

export function fanoutMessages(k: Knobs): number {
  return k.fanoutMessages;
}

export const fanout: Scenario = {
  name: 'fanout',
  describe: (k) => `fanout: ${fanoutMessages(k)} × ${kib(k.size)} with ${k.fanoutRecipients} recipients each, relayed to the sink, end to end`,
  targets: relayTargets,
  run: (k) => interleave(k, 'fanout', [k.fanoutRecipients], relayTargets(k), (r) => `${r} rcpts`, (r, t, run) => relayRun(k, { scenario: 'fanout', variant: `${r} rcpts`, x: r, target: t, run, messages: fanoutMessages(k), size: k.size, recipients: r })),
};
