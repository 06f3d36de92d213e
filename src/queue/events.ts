// The durable event log for event webhooks (POSTERN_EVENTS_URL): events are appended to the
// queue's LMDB environment (joining whatever write batch is open, so they share its commit)
// and removed once the receiver acknowledged them, or by trim() past the size and age bounds
// (POSTERN_EVENTS_MAX, POSTERN_EVENTS_MAX_AGE) while it is down. Keys are a monotonic
// sequence that is also the append time in microseconds, so age needs no decoding.
import type { Database } from 'lmdb';

/**
 * complained / feedback: an ARF report about a message (delivery/bounce-processor.ts);
 * 'shaping.suspended': a source × site was suspended (delivery/shaping/shaper.ts; the alert hook);
 * 'alert.raised' / 'alert.cleared': an anomaly alert came up or ended (delivery/alerts.ts).
 */
export type EventType = 'received' | 'delivered' | 'deferred' | 'bounced' | 'rejected' | 'complained' | 'feedback' | 'shaping.suspended' | 'alert.raised' | 'alert.cleared';

export interface MailEvent {
  type: EventType;
  /** ISO 8601. */
  time: string;
  id?: string;
  source?: 'smtp' | 'http';
  sender?: string;
  recipient?: string;
  recipients?: number;
  destination?: string;
  code?: number;
  enhanced?: string;
  /** Why a delivery failed, by the bounce rules (lib/bounce-class.ts): bounced and deferred events. */
  category?: string;
  /** A report that came back after the delivery (a DSN or ARF report), not the next hop's reply. */
  async?: boolean;
  /** How an asynchronous report was tied to the message: 'verp' or 'message-id'. */
  matchedBy?: string;
  /** ARF Feedback-Type (abuse, fraud, not-spam, …). */
  feedbackType?: string;
  /** The report added the recipient to the suppression list. */
  suppressed?: boolean;
  reply?: string;
  attempts?: number;
  /** deferred: false when nothing was sent (the shaper paced it, an open circuit, stopping); absent when tried. */
  tried?: boolean;
  size?: number;
  /** The SMTP client's address (rejections). */
  client?: string;
  /** A summary of this many rejections (events/event-recorder.ts), the first at `since`. */
  count?: number;
  since?: string;
  /**
   * shaping.suspended: the shaping site, the source (`egress`), why, and until when (ISO 8601).
   * delivered, deferred, bounced: `egress` is the source the attempt left from and `pool` the
   * pool it was picked from (absent when no shaping source applies).
   */
  site?: string;
  egress?: string;
  pool?: string;
  reason?: string;
  until?: string;
  /** alert.*: the alert's id, rule, scope, value and threshold (docs/alerts.md); `since` is when it was raised. */
  alert?: string;
  rule?: string;
  scope?: string;
  value?: number;
  threshold?: number;
}

/** Who caused an event, for the recorder's choice to log it alone or fold it into a summary. */
export interface EventOrigin {
  /** Neither in POSTERN_TRUSTED_NETWORKS nor authenticated. */
  untrusted: boolean;
}

export interface EventBounds {
  maxEvents: number;
  maxAgeMs: number;
}

/** Keys removed per write transaction by trim(): bounds the size of one commit. */
const TRIM_CHUNK = 10_000;

export class EventLog {
  readonly #db: Database<string, number>;
  #seq: number;
  #count: number;
  /** Events removed by trim() unsent, since start. */
  dropped = 0;

  constructor(db: Database<string, number>) {
    this.#db = db;
    let last = 0;
    for (const k of db.getKeys({ reverse: true, limit: 1 })) last = k as number;
    this.#seq = Math.max(last, Date.now() * 1000);
    // One native count at open; then kept up to date here (getCount() walks every key).
    this.#count = db.getCount();
  }

  #nextKey(): number {
    this.#seq = Math.max(this.#seq + 1, Date.now() * 1000);
    return this.#seq;
  }

  /** Append without waiting: the put joins the current write batch (and its fsync). */
  append(e: MailEvent): void {
    this.#count++;
    void this.#db.put(this.#nextKey(), JSON.stringify(e)).catch(() => {
      this.#count--;
    });
  }

  /** Append several in one write transaction (one commit, one fsync). */
  async appendMany(events: readonly MailEvent[]): Promise<void> {
    if (events.length === 0) return;
    const rows = events.map((e) => [this.#nextKey(), JSON.stringify(e)] as const);
    this.#count += rows.length;
    try {
      await this.#db.transaction(() => {
        for (const [k, v] of rows) this.#db.putSync(k, v);
      });
    } catch (err) {
      this.#count -= rows.length;
      throw err;
    }
  }

  /** Resolves once every append issued so far is committed (and visible to peek). */
  async committed(): Promise<void> {
    await this.#db.committed;
  }

  /** The oldest events, up to `limit`. */
  peek(limit: number): Array<{ key: number; event: MailEvent }> {
    const out: Array<{ key: number; event: MailEvent }> = [];
    for (const { key, value } of this.#db.getRange({ limit })) {
      try {
        out.push({ key: key as number, event: JSON.parse(value) as MailEvent });
      } catch {
        out.push({ key: key as number, event: { type: 'rejected', time: new Date(0).toISOString(), reply: 'unreadable event record' } });
      }
    }
    return out;
  }

  /** Remove acknowledged events. */
  async ack(keys: number[]): Promise<void> {
    this.#count -= await this.#remove(keys);
  }

  async #remove(keys: readonly number[]): Promise<number> {
    let removed = 0;
    await this.#db.transaction(() => {
      for (const k of keys) if (this.#db.removeSync(k)) removed++;
    });
    return removed;
  }

  /**
   * Drop the oldest events past maxAgeMs and past maxEvents, counting them in `dropped`.
   * Returns how many went. Removed in chunks of TRIM_CHUNK keys per commit.
   */
  async trim(b: EventBounds, nowMs = Date.now()): Promise<number> {
    // Appends still in the open write batch are invisible to getKeys: let them land first.
    await this.committed();
    let dropped = 0;
    const cutoff = (nowMs - b.maxAgeMs) * 1000;
    for (;;) {
      const old = [...this.#db.getKeys({ end: cutoff, limit: TRIM_CHUNK })] as number[];
      if (old.length === 0) break;
      const n = await this.#remove(old);
      this.#count -= n;
      dropped += n;
      if (old.length < TRIM_CHUNK) break;
    }
    while (this.#count > b.maxEvents) {
      const over = [...this.#db.getKeys({ limit: Math.min(TRIM_CHUNK, this.#count - b.maxEvents) })] as number[];
      if (over.length === 0) break;
      const n = await this.#remove(over);
      this.#count -= n;
      dropped += n;
      if (n === 0) break;
    }
    this.dropped += dropped;
    return dropped;
  }

  /** Events waiting to be sent (appended, not yet acknowledged or dropped). */
  get pending(): number {
    return this.#count;
  }
}
