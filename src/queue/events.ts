// The durable event log for event webhooks (POSTERN_EVENTS_URL): events are appended in the
// same LMDB write batch as the queue change they describe (so they share its commit) and are
// removed only once the receiver acknowledged them. Keys are a monotonic sequence.
import type { Database } from 'lmdb';

export type EventType = 'received' | 'delivered' | 'deferred' | 'bounced' | 'rejected';

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
  reply?: string;
  attempts?: number;
  size?: number;
}

export class EventLog {
  readonly #db: Database<string, number>;
  #seq: number;

  constructor(db: Database<string, number>) {
    this.#db = db;
    let last = 0;
    for (const k of db.getKeys({ reverse: true, limit: 1 })) last = k as number;
    this.#seq = Math.max(last, Date.now() * 1000);
  }

  /** Append without waiting: the put joins the current write batch (and its fsync). */
  append(e: MailEvent): void {
    void this.#db.put(++this.#seq, JSON.stringify(e)).catch(() => {});
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
    await this.#db.transaction(() => {
      for (const k of keys) void this.#db.remove(k);
    });
  }

  get pending(): number {
    return this.#db.getCount();
  }
}
