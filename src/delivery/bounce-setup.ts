// The delivery side's part of bounce handling (docs/bounces.md), built once by engine.ts: the
// classifier of failures with its tally, the VERP wrapper of the SMTP transport, the bounce
// processor that reads reports addressed to us, and the route that sends them there.
import type { Config } from '../config/schema.js';
import type { Queue } from '../queue/store.js';
import type { Logger } from '../log/logger.js';
import type { MailEvent } from '../queue/events.js';
import type { ReplyRecord } from '../queue/types.js';
import { mapKey } from '../config/recipient-map.js';
import { matchRoute } from '../config/routes.js';
import { classifyFailure, type BounceCategory, type BounceRules } from '../lib/bounce-class.js';
import { normalizeDomain } from '../lib/domain-name.js';
import { decodeVerp, type VerpKey } from '../protocol/verp.js';
import { BounceProcessor } from './bounce-processor.js';
import { BounceAddressTransport, VerpTransport } from './verp-transport.js';
import { FailureTally, type BounceStatsView } from './failure-tally.js';
import type { Destination, Transport } from './types.js';

export interface BounceSetup {
  /** The bounce processor's destination for reports to `domain`, or null: route it as usual. */
  route(domain: string): Destination | null;
  /** The outbound SMTP transport (VERP senders when POSTERN_VERP is set). */
  outbound(smtp: Transport): Transport;
  /** Any transport, with bounce addresses taken out to the processor. */
  withReports(t: Transport): Transport;
  readonly processor: BounceProcessor;
  classify(reply: ReplyRecord, outcome: 'failed' | 'deferred'): BounceCategory;
  stats(): BounceStatsView;
}

export function createBounceSetup(c: Readonly<Config>, queue: Queue, log: Logger, o: { rules?: BounceRules; verp?: VerpKey; onEvent?: (e: MailEvent) => void }): BounceSetup {
  const verp = o.verp ?? null;
  const rules = o.rules ?? { rules: [] };
  const bounceAddresses = new Set(c.bounceAddresses);
  const bounceDomains = new Set(c.bounceAddresses.map((a) => a.slice(a.lastIndexOf('@') + 1)));
  const isBounceAddress = (a: string): boolean => bounceAddresses.has(mapKey(a) ?? '');
  const tally = new FailureTally();
  const processor = new BounceProcessor({
    queue,
    log: log.child({ mod: 'bounces' }),
    rules,
    verp,
    suppressOn: new Set(c.suppressOn),
    maxReportBytes: c.maxReportBytes,
    hostname: c.hostname,
    isReportAddress: (a) => (verp !== null && decodeVerp(verp, a).ok) || isBounceAddress(a),
    tally,
    ...(o.onEvent ? { onEvent: o.onEvent } : {}),
  });
  let verpSmtp: VerpTransport | null = null;
  const reporting = verp !== null || bounceAddresses.size > 0;
  return {
    processor,
    // The VERP domain, and a bounce address's domain that has no route of its own.
    route: (domain) => {
      const d = normalizeDomain(domain);
      return (verp !== null && d === verp.domain) || (bounceDomains.has(d) && !matchRoute(c.routes, d)) ? { kind: 'bounces', key: 'bounces' } : null;
    },
    outbound: (smtp) => (verp === null ? smtp : (verpSmtp = new VerpTransport(smtp, verp))),
    withReports: (t) => (bounceAddresses.size === 0 ? t : new BounceAddressTransport(t, processor, isBounceAddress)),
    classify: (reply, outcome) => {
      const category = classifyFailure(rules, reply);
      tally.add(category, outcome === 'failed' ? 'bounced' : 'deferred');
      return category;
    },
    stats: () => ({ failures: tally.list(), reports: reporting ? { ...processor.stats } : null, verpSkipped: verpSmtp?.skipped ?? 0 }),
  };
}
