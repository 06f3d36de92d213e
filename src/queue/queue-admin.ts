// Administration of queued messages (the HTTP admin API, tools, tests): hold, release, retry
// now, remove, fail recipients (an administrator's bounce or delete, of a message or of one
// domain's recipients), the same actions over every message of a domain, and listing. Each
// change is a write transaction through RecordStore; the transitions: docs/queue.md.
import { makeReply } from './records.js';
import { failure, success } from '../lib/result.js';
import type { RecordStore, Writer } from './record-store.js';
import type { FailRecipientsResult, MessageRecord, Recipient, ReplyRecord } from './types.js';

export class QueueAdmin {
  readonly #store: RecordStore;
  readonly #write: Writer;
  readonly #clock: () => number;
  readonly #checkRead: () => void;

  constructor(store: RecordStore, write: Writer, clock: () => number, checkRead: () => void) {
    this.#store = store;
    this.#write = write;
    this.#clock = clock;
    this.#checkRead = checkRead;
  }

  /** Take a message out of circulation (a lease on it is dropped); never leased until released. */
  async hold(id: string): Promise<void> {
    await this.#write('hold', () => {
      this.#holdIn(this.#store.load(id));
    });
  }

  /** Make a held (or scheduled) message due now; a leased message is left alone. */
  async release(id: string): Promise<void> {
    await this.#write('release', () => {
      this.#makeDueIn(this.#store.load(id), Math.floor(this.#clock()));
    });
  }

  /**
   * Retry now: a ready message scheduled in the future becomes due now ('due', also when it
   * already was). A leased or held message is left alone and its state returned.
   */
  retryNow(id: string): Promise<'due' | 'leased' | 'held'> {
    return this.#write('retry', () => {
      const rec = this.#store.load(id);
      if (rec.state !== 'ready') return rec.state;
      this.#makeDueIn(rec, Math.floor(this.#clock()));
      return 'due' as const;
    });
  }

  /** Delete a message and its body whatever its state. */
  async remove(id: string): Promise<void> {
    await this.#write('remove', () => {
      const rec = this.#store.load(id);
      this.#store.update(rec, () => false);
    });
  }

  /**
   * Fail the pending recipients of a message with `reply` (an administrator's bounce or
   * delete): all of them, or only those in `domain`. Recipient attempts are not counted
   * (nothing was tried). A leased message (a delivery in flight) is left alone:
   * the error 'leased'. When no recipient is pending afterwards the message and its body are
   * deleted (removed: true), as settle() does when the last recipient becomes final, and
   * `record` is the final record; otherwise it keeps its state and schedule. `failed` are the
   * recipients failed now, for the DSN, which the caller queues BEFORE this call (as the
   * scheduler does: a crash in between can duplicate a bounce, never lose one).
   */
  failRecipients(id: string, reply: ReplyRecord, domain?: string): Promise<FailRecipientsResult> {
    const d = domain?.toLowerCase();
    return this.#write(d === undefined ? 'bounce' : 'domain-fail', () => {
      const rec = this.#store.load(id);
      if (rec.state === 'leased') return failure('leased' as const);
      const nowMs = Math.floor(this.#clock());
      const failed: Recipient[] = [];
      const kept = this.#store.update(rec, () => {
        for (const r of rec.recipients) {
          if (r.state !== 'pending' || (d !== undefined && r.domain !== d)) continue;
          r.state = 'failed';
          r.lastReply = makeReply(reply, nowMs);
          failed.push(r);
        }
        return rec.recipients.some((r) => r.state === 'pending');
      });
      if (!kept) rec.lease = undefined;
      return success({ record: rec, failed, removed: !kept });
    });
  }

  /** Ids of messages with a pending recipient in `domain`, in id order, at most `limit`. */
  idsForDomain(domain: string, limit: number): string[] {
    this.#checkRead();
    const d = domain.toLowerCase();
    const out: string[] = [];
    for (const { key, value } of this.#store.messages.getRange({})) {
      const rec = this.#store.decode(key, value);
      if (rec !== undefined && hasPendingIn(rec, d)) out.push(key);
      if (out.length >= limit) break;
    }
    return out;
  }

  /**
   * Apply hold / release / retry to every message with a pending recipient in `domain`
   * (the whole message: its other recipients too). Scans the records in id order (there is
   * no domain index: O(queue) reads, done in slices of at most batchSize*20 records so the
   * event loop is not held), and changes at most `batchSize` messages per write transaction,
   * re-checking each inside it. Resolves with the number of messages whose state changed:
   *   hold:    any non-held message becomes held (a lease is dropped, as hold() does)
   *   release: held or scheduled becomes due now (as release())
   *   retry:   ready-but-scheduled becomes due now (leased and held ones are left alone)
   */
  async applyToDomain(domain: string, action: 'hold' | 'release' | 'retry', batchSize = 500): Promise<number> {
    const d = domain.toLowerCase().replace(/\.$/, '');
    const batch = Math.max(1, Math.floor(batchSize));
    const store = this.#store;
    let after: string | undefined;
    let changed = 0;
    for (;;) {
      this.#checkRead();
      const ids: string[] = [];
      let last: string | undefined;
      let scanned = 0;
      for (const { key, value } of store.messages.getRange(after === undefined ? {} : { start: after })) {
        if (key === after) continue;
        last = key;
        scanned++;
        const rec = store.decode(key, value);
        if (rec !== undefined && hasPendingIn(rec, d)) ids.push(key);
        if (ids.length >= batch || scanned >= batch * 20) break;
      }
      if (last === undefined) break;
      after = last;
      if (ids.length === 0) continue;
      changed += await this.#write(`domain-${action}`, () => {
        const nowMs = Math.floor(this.#clock());
        // Every record read (and decoded) before the first write.
        const recs = ids.map((id) => store.read(id));
        let n = 0;
        for (const rec of recs) {
          if (rec === undefined || !hasPendingIn(rec, d)) continue;
          if (action === 'hold' ? this.#holdIn(rec) : action === 'release' ? this.#makeDueIn(rec, nowMs) : rec.state === 'ready' && this.#makeDueIn(rec, nowMs)) n++;
        }
        return n;
      });
    }
    return changed;
  }

  /**
   * Messages in id (arrival) order, at most `limit`; `after` is an exclusive cursor: the last
   * id of the previous page. O(limit). A corrupt record is left out (and set aside).
   */
  list(limit = Infinity, after?: string): MessageRecord[] {
    this.#checkRead();
    const out: MessageRecord[] = [];
    // A lazy range, no `limit` on it: a corrupt record left out must not shorten the page.
    for (const rec of this.#store.records(after)) {
      if (out.length >= limit) break;
      out.push(rec);
    }
    return out;
  }

  /** Inside a write transaction: held or scheduled -> due now. False if nothing changed. */
  #makeDueIn(rec: MessageRecord, nowMs: number): boolean {
    if (rec.state === 'leased' || (rec.state === 'ready' && rec.nextAttemptAt <= nowMs)) return false;
    this.#store.update(rec, () => {
      rec.state = 'ready';
      rec.nextAttemptAt = nowMs;
      return true;
    });
    return true;
  }

  /** Inside a write transaction: -> held (a lease is dropped). False if it already was. */
  #holdIn(rec: MessageRecord): boolean {
    if (rec.state === 'held') return false;
    this.#store.update(rec, () => {
      rec.state = 'held';
      rec.lease = undefined;
      return true;
    });
    return true;
  }
}

function hasPendingIn(rec: MessageRecord, domain: string): boolean {
  return rec.recipients.some((r) => r.state === 'pending' && r.domain === domain);
}
