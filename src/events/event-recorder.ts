// What goes into the event log (queue/events.ts), and how fast. Events of mail postern took
// are appended as they come; rejections caused by untrusted, unauthenticated clients are
// folded into one 'rejected' summary per client address per interval (with a count), written
// together in one commit, so a client refusing DATA in a loop costs one event per interval,
// not one fsync per rejection. The log is trimmed to its size and age bounds, dropping the
// oldest (counted in EventLog.dropped), so a dead receiver cannot fill the disk.
//
//   record(e) ──untrusted rejection──▶ #byClient (≤ MAX_CLIENTS, then one "other" entry)
//       │                                   │ every intervalMs: appendMany(summaries)
//       └──────────── anything else ────────┴──▶ EventLog ──▶ EventSender (POST, ack)
import type { EventBounds, EventLog, EventOrigin, MailEvent } from '../queue/events.js';

/** Client addresses summarised apart per interval; past it they share one summary. */
export const MAX_CLIENTS = 1000;
/** Trim at least this often while events come in. */
const TRIM_INTERVAL_MS = 10_000;

export interface EventRecorderOptions extends EventBounds {
  /** One summary per client address per this interval (POSTERN_EVENTS_REJECTED_INTERVAL). */
  rejectedIntervalMs: number;
  /** Called after events were appended (the sender's nudge). */
  onAppend: () => void;
  /** Told about a failed write of summaries (the log is best effort for them). */
  onError?: (err: unknown) => void;
}

interface Tally {
  count: number;
  since: string;
  last: MailEvent;
}

export class EventRecorder {
  readonly #log: EventLog;
  readonly #o: EventRecorderOptions;
  readonly #byClient = new Map<string, Tally>();
  /** Tally of the clients past MAX_CLIENTS in this interval. */
  #others: Tally | null = null;
  #flushTimer: NodeJS.Timeout | null = null;
  #trimTimer: NodeJS.Timeout | null = null;
  #trimming: Promise<unknown> | null = null;
  #appendedSinceTrim = 0;
  #closed = false;
  /** Rejections folded into summaries, since start. */
  aggregated = 0;

  constructor(log: EventLog, o: EventRecorderOptions) {
    this.#log = log;
    this.#o = o;
  }

  start(): void {
    this.#trim();
    this.#trimTimer = setInterval(() => this.#trim(), TRIM_INTERVAL_MS);
    this.#trimTimer.unref();
  }

  record(e: MailEvent, origin?: EventOrigin): void {
    if (this.#closed) return;
    if (e.type === 'rejected' && origin?.untrusted === true) {
      this.#tally(e);
      return;
    }
    this.#log.append(e);
    this.#appended(1);
  }

  #tally(e: MailEvent): void {
    this.aggregated++;
    const key = e.client ?? '';
    let t = this.#byClient.get(key);
    if (t === undefined) {
      if (this.#byClient.size >= MAX_CLIENTS) {
        t = this.#others ??= { count: 0, since: e.time, last: e };
      } else {
        t = { count: 0, since: e.time, last: e };
        this.#byClient.set(key, t);
      }
    }
    t.count++;
    t.last = e;
    if (this.#flushTimer === null) {
      this.#flushTimer = setTimeout(() => void this.flush(), this.#o.rejectedIntervalMs);
      this.#flushTimer.unref();
    }
  }

  /** Write the summaries of this interval now (one commit). */
  async flush(): Promise<void> {
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    const summaries: MailEvent[] = [];
    // The last rejection's type, time, source and reply codes; its message fields (id, sender)
    // would describe one message of many.
    const summary = (t: Tally, client: string | undefined, what: string): MailEvent => {
      const l = t.last;
      const e: MailEvent = { type: 'rejected', time: l.time, count: t.count, since: t.since, reply: `${t.count} ${what}; the last: ${l.reply ?? ''}` };
      if (l.source !== undefined) e.source = l.source;
      if (client !== undefined) e.client = client;
      if (l.code !== undefined) e.code = l.code;
      if (l.enhanced !== undefined) e.enhanced = l.enhanced;
      return e;
    };
    for (const [client, t] of this.#byClient) summaries.push(summary(t, client === '' ? undefined : client, t.count === 1 ? 'rejection' : 'rejections'));
    if (this.#others !== null) summaries.push(summary(this.#others, undefined, `rejections from clients past the first ${MAX_CLIENTS} of the interval`));
    this.#byClient.clear();
    this.#others = null;
    if (summaries.length === 0) return;
    try {
      await this.#log.appendMany(summaries);
      this.#appended(summaries.length);
    } catch (err) {
      this.#o.onError?.(err);
    }
  }

  #appended(n: number): void {
    this.#o.onAppend();
    this.#appendedSinceTrim += n;
    // A burst should not wait for the timer to be trimmed back under the bound.
    if (this.#appendedSinceTrim >= this.#trimThreshold()) this.#trim();
  }

  #trimThreshold(): number {
    return Math.max(1, Math.floor(this.#o.maxEvents / 10));
  }

  #trim(): void {
    if (this.#trimming !== null || this.#closed) return;
    this.#appendedSinceTrim = 0;
    this.#trimming = this.#log
      .trim({ maxEvents: this.#o.maxEvents, maxAgeMs: this.#o.maxAgeMs })
      .catch((err: unknown) => this.#o.onError?.(err))
      .finally(() => {
        this.#trimming = null;
        // Appends that came while trimming may have crossed the bound again.
        if (this.#appendedSinceTrim >= this.#trimThreshold()) this.#trim();
      });
  }

  /** Write the pending summaries and stop; the queue may close after this resolves. */
  async close(): Promise<void> {
    if (this.#trimTimer !== null) clearInterval(this.#trimTimer);
    await this.flush();
    this.#closed = true;
    await this.#trimming;
  }
}
