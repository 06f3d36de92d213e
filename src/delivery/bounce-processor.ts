// The bounce processor: the delivery target of mail addressed to the VERP domain
// (POSTERN_VERP) or to a bounce address (POSTERN_BOUNCE_ADDRESSES). Instead of relaying it,
// each message is read as a DSN or ARF report (bounce-report.ts), matched to the message and
// recipient it is about, classified (lib/bounce-class.ts), and becomes an event and, by
// POSTERN_SUPPRESS_ON, a suppression entry. It always counts as delivered: a report that
// cannot be read or matched is logged and dropped (a bounce of a bounce helps no one).
//
// Matching, and what it is trusted for:
//   VERP   an address carrying a valid tag (the envelope recipient, or in an ARF report the
//          Original-Mail-From or the attached Return-Path): the id and recipient are ours, so
//          it may suppress.
//   Message-ID  the attached Message-ID is one postern made (<id@POSTERN_HOSTNAME>): an event
//          only, never a suppression. Every recipient of a message sees its Message-ID and the
//          other recipients (To/Cc), so a report naming it cannot show which recipient it is
//          about: a co-recipient could forge one naming another. Nor can the queue vouch for
//          it: a message still queued after a delivery has more than one recipient (a record
//          is deleted once all its recipients are final), which is exactly that case.
import type { Queue } from '../queue/store.js';
import type { MailEvent } from '../queue/events.js';
import type { Logger } from '../log/logger.js';
import { classifyFailure, splitDiagnostic, type BounceRules, type FailureReply } from '../lib/bounce-class.js';
import { decodeVerp, type VerpKey } from '../protocol/verp.js';
import { parseReport, type DsnRecipient, type ParsedReport } from './bounce-report.js';
import type { DeliveryRequest, Destination, RecipientResult, Transport } from './types.js';
import type { FailureTally } from './failure-tally.js';

/** ARF feedback types that are complaints (RFC 5965 §7.3); "not-spam" is the opposite. */
const COMPLAINT_TYPES = new Set(['abuse', 'fraud', 'virus', 'other']);
const ID = /^[0-9a-v]{16}$/;

export interface BounceProcessorOptions {
  queue: Queue;
  log: Logger;
  rules: BounceRules;
  /** null: VERP is off (only bounce addresses and Message-ID matching). */
  verp: VerpKey | null;
  /** Categories (and "complaint") that add a suppression entry. */
  suppressOn: ReadonlySet<string>;
  maxReportBytes: number;
  /** POSTERN_HOSTNAME: the right side of the Message-IDs postern makes. */
  hostname: string;
  /** A VERP address or a bounce address: what this processor reads. */
  isReportAddress: (address: string) => boolean;
  /** Asynchronous failures are counted here by category. */
  tally?: FailureTally;
  onEvent?: (e: MailEvent) => void;
}

export interface BounceProcessorStats {
  reports: number;
  dsn: number;
  arf: number;
  /** Not a DSN or ARF report (auto-replies to a VERP address, junk), too large, or unreadable. */
  ignored: number;
  /** A report about no message we can name. */
  unmatched: number;
  suppressed: number;
  complaints: number;
}

type Match = { via: 'verp' | 'message-id'; id: string; recipient: string; trusted: boolean };

export class BounceProcessor implements Transport {
  readonly #o: BounceProcessorOptions;
  readonly stats: BounceProcessorStats = { reports: 0, dsn: 0, arf: 0, ignored: 0, unmatched: 0, suppressed: 0, complaints: 0 };

  constructor(o: BounceProcessorOptions) {
    this.#o = o;
  }

  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    const o = this.#o;
    const mine = req.recipients.filter((r) => o.isReportAddress(r.address));
    if (mine.length > 0) {
      try {
        await this.process(mine.map((r) => r.address), req.body, req.message.id);
      } catch (err) {
        // A queue write failed (suppression): the report is lost, not retried (it is not ours).
        o.log.error({ err, id: req.message.id }, 'bounce report processing failed');
      }
    }
    const at = Date.now();
    const done = { code: 250, text: 'report processed', destination: dest.key, at, transient: false };
    // Another address of a domain that only has bounce addresses: no such mailbox.
    const none = { code: 550, enhanced: '5.1.1', text: 'no such mailbox (this domain only takes bounce reports)', destination: dest.key, at, transient: false };
    return req.recipients.map((r): RecipientResult => (o.isReportAddress(r.address) ? { kind: 'delivered', address: r.address, reply: done } : { kind: 'failed', address: r.address, reply: none }));
  }

  async close(): Promise<void> {}

  /** Read one report addressed to `envelopeTo`; `inboundId` names it in logs. */
  async process(envelopeTo: readonly string[], body: Buffer, inboundId: string): Promise<void> {
    const o = this.#o;
    this.stats.reports++;
    if (body.length > o.maxReportBytes) {
      this.stats.ignored++;
      o.log.warn({ id: inboundId, size: body.length, max: o.maxReportBytes }, 'bounce report too large: ignored');
      return;
    }
    const report = await parseReport(body);
    if (report.kind === 'other') {
      this.stats.ignored++;
      o.log.info({ id: inboundId, why: report.why }, 'not a DSN or ARF report: ignored');
      return;
    }
    if (report.kind === 'dsn') {
      this.stats.dsn++;
      await this.#dsn(report, envelopeTo, inboundId);
    } else {
      this.stats.arf++;
      await this.#arf(report, envelopeTo, inboundId);
    }
  }

  #verp(candidates: ReadonlyArray<string | undefined>): Match | null {
    if (this.#o.verp === null) return null;
    for (const c of candidates) {
      if (c === undefined) continue;
      const r = decodeVerp(this.#o.verp, c);
      if (r.ok) return { via: 'verp', id: r.value.id, recipient: r.value.recipient, trusted: true };
    }
    return null;
  }

  /** By our Message-ID: never trusted (see the top of this file), an event only. */
  #byMessageId(messageId: string | undefined, recipient: string | undefined): Match | null {
    if (messageId === undefined || recipient === undefined) return null;
    const m = /^<([0-9a-v]{16})@([^<>@\s]+)>$/i.exec(messageId);
    if (!m || m[2]!.toLowerCase() !== this.#o.hostname.toLowerCase() || !ID.test(m[1]!.toLowerCase())) return null;
    return { via: 'message-id', id: m[1]!.toLowerCase(), recipient: recipient.toLowerCase(), trusted: false };
  }

  async #dsn(report: Extract<ParsedReport, { kind: 'dsn' }>, envelopeTo: readonly string[], inboundId: string): Promise<void> {
    const o = this.#o;
    const verp = this.#verp([...envelopeTo, report.original.returnPath]);
    // With VERP the envelope is about one recipient: the failed group of the report, whatever
    // address it names (a forwarder's final address may differ from the one we sent to).
    const group: DsnRecipient | undefined = report.recipients.find((r) => r.action === 'failed') ?? report.recipients.find((r) => r.action === 'delayed');
    if (group === undefined) {
      this.stats.ignored++;
      o.log.info({ id: inboundId }, 'DSN with no failed or delayed recipient: ignored');
      return;
    }
    const match = verp ?? this.#byMessageId(report.original.messageId, group.originalRecipient ?? group.finalRecipient);
    const reply: FailureReply = group.diagnostic !== undefined ? splitDiagnostic(group.diagnostic) : { text: '' };
    if (group.status !== undefined) reply.enhanced = group.status;
    const category = classifyFailure(o.rules, reply);
    const permanent = group.action === 'failed' && (group.status?.startsWith('5') ?? (reply.code !== undefined && reply.code >= 500));
    o.tally?.add(category, group.action === 'failed' ? 'async-bounced' : 'async-deferred');
    const text = [reply.code, reply.enhanced, reply.text].filter((x) => x !== undefined && x !== '').join(' ');
    if (match === null) {
      this.stats.unmatched++;
      o.log.info({ id: inboundId, rcpt: group.finalRecipient, category, status: group.status, messageId: report.original.messageId }, 'DSN about no message of ours: ignored');
      return;
    }
    const suppress = permanent && match.trusted && o.suppressOn.has(category);
    if (suppress) await this.#suppress(match.recipient, `hard bounce (${category}): ${text}`);
    o.onEvent?.({
      type: group.action === 'failed' ? 'bounced' : 'deferred',
      time: new Date().toISOString(),
      id: match.id,
      recipient: match.recipient,
      async: true,
      category,
      matchedBy: match.via,
      ...(reply.code !== undefined ? { code: reply.code } : {}),
      ...(reply.enhanced !== undefined ? { enhanced: reply.enhanced } : {}),
      reply: clean(text),
      ...(report.reportingMta !== undefined ? { destination: clean(report.reportingMta) } : {}),
      suppressed: suppress,
    });
    o.log.info({ id: match.id, rcpt: match.recipient, report: inboundId, action: group.action, category, code: reply.code, enhanced: reply.enhanced, reply: clean(text), matchedBy: match.via, trusted: match.trusted, suppressed: suppress }, 'asynchronous bounce');
  }

  async #arf(report: Extract<ParsedReport, { kind: 'arf' }>, envelopeTo: readonly string[], inboundId: string): Promise<void> {
    const o = this.#o;
    const verp = this.#verp([report.originalMailFrom, report.original.returnPath, ...envelopeTo]);
    const match = verp ?? this.#byMessageId(report.original.messageId, report.originalRcptTo[0] ?? report.original.to);
    if (match === null) {
      this.stats.unmatched++;
      o.log.info({ id: inboundId, feedbackType: report.feedbackType, messageId: report.original.messageId }, 'feedback report about no message of ours: ignored');
      return;
    }
    const complaint = COMPLAINT_TYPES.has(report.feedbackType);
    if (complaint) this.stats.complaints++;
    const suppress = complaint && match.trusted && o.suppressOn.has('complaint');
    if (suppress) await this.#suppress(match.recipient, `complaint (${report.feedbackType})${report.userAgent !== undefined ? ` from ${report.userAgent}` : ''}`);
    o.onEvent?.({
      type: complaint ? 'complained' : 'feedback',
      time: new Date().toISOString(),
      id: match.id,
      recipient: match.recipient,
      async: true,
      feedbackType: clean(report.feedbackType),
      matchedBy: match.via,
      ...(report.userAgent !== undefined ? { reply: clean(report.userAgent) } : {}),
      suppressed: suppress,
    });
    o.log.info({ id: match.id, rcpt: match.recipient, report: inboundId, feedbackType: report.feedbackType, matchedBy: match.via, trusted: match.trusted, suppressed: suppress }, complaint ? 'complaint' : 'feedback report');
  }

  async #suppress(recipient: string, reason: string): Promise<void> {
    try {
      if (await this.#o.queue.suppressions.add(recipient, clean(reason))) this.stats.suppressed++;
    } catch (err) {
      // A recipient the list cannot hold (over its key size): logged, not fatal.
      if (err instanceof RangeError) this.#o.log.warn({ rcpt: recipient, err: err.message }, 'not suppressible');
      else throw err;
    }
  }
}

/** Text from a report as it goes into events, logs and the suppression reason: one bounded line. */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f\u2028\u2029]+/g, ' ').trim().slice(0, 300);
}
