// Leasing: hands due messages to deliverers and takes expired leases back. lease() picks due
// keys by the fairness rotation (fairness.ts) and moves each message from the due index to
// the lease index; reclaim returns leases that expired (or all of them) to ready. Each is one
// write transaction; records change through RecordStore. docs/queue.md "Leases and recovery".
import type { Logger } from '../log/logger.js';
import { CounterDelta } from './counters.js';
import { FairRotation } from './fairness.js';
import { dueRange, expiredLeaseRange, type DueKey, type LeaseKey } from './keys.js';
import { makeLease } from './records.js';
import type { RecordStore, Writer } from './record-store.js';
import { PRIORITIES, type MessageRecord } from './types.js';
import { invalidArgument } from '../lib/invalid-argument.js';

/** The largest time a Date can hold: every lease expires before it. */
const MAX_TIME_MS = 8.64e15;

type DueEntry = { key: DueKey; value: string };

export class LeaseManager {
  readonly #store: RecordStore;
  readonly #write: Writer;
  readonly #log: Logger;
  readonly #clock: () => number;
  readonly #leaseMs: number;
  /** Carries over from one lease() to the next; restarts at slot 0 when the queue is opened. */
  readonly #rotation = new FairRotation();

  constructor(store: RecordStore, write: Writer, log: Logger, clock: () => number, leaseMs: number) {
    this.#store = store;
    this.#write = write;
    this.#log = log;
    this.#clock = clock;
    this.#leaseMs = leaseMs;
  }

  /**
   * Lease up to `limit` due messages (state ready, nextAttemptAt <= now), picking priorities
   * by the fairness rotation (fairness.ts). Each read of the due index is a range read that
   * starts at the first due key of a priority and stops at `now`: messages not yet due are
   * never touched. Leased messages move to the lease index with expiresAt = now + leaseMs.
   * With `maxBytes`, leasing stops before the message that would take the sizes leased past
   * it; the rest stay due, untouched. The first is leased whatever its size unless
   * `atLeastOne` is false (then nothing may be leased). Ids in `skip` (the caller's deliveries
   * in flight, whose lease was reclaimed under them) are passed over and stay due: a message
   * is never handed out twice by one deliverer.
   */
  lease(opts: { limit: number; owner: string; leaseMs?: number; maxBytes?: number; atLeastOne?: boolean; skip?: ReadonlySet<string> }): Promise<MessageRecord[]> {
    const limit = Math.floor(opts.limit);
    const leaseMs = opts.leaseMs ?? this.#leaseMs;
    if (typeof opts.owner !== 'string') return Promise.reject(invalidArgument('lease: owner must be a string', 'type'));
    if (!(limit > 0)) return Promise.resolve([]);
    return this.#write('lease', () => {
      const now = this.#clock();
      const nowMs = Math.floor(now);
      const expiresAt = Math.ceil(now + leaseMs);
      const store = this.#store;
      // Read phase: the due keys, then every record they name, decoded, before any write.
      const picked = this.#pickDue(nowMs, limit, opts.skip);
      const recs = readOnce(picked, (id) => store.read(id));
      const delta = new CounterDelta();
      const out: MessageRecord[] = [];
      const maxBytes = opts.maxBytes ?? Infinity;
      const oneAnyway = opts.atLeastOne !== false;
      let bytes = 0;
      for (let i = 0; i < picked.length; i++) {
        const e = picked[i]!;
        const rec = recs[i];
        if (rec !== undefined && rec.state === 'ready' && (out.length > 0 || !oneAnyway) && bytes + rec.size > maxBytes) {
          // The picks not taken give their turns back: the rotation goes on from here next time.
          this.#rotation.rewind(picked.length - i);
          break;
        }
        void store.due.remove(e.key);
        if (rec === undefined || rec.state !== 'ready') {
          // Absent, corrupt (set aside by the repair that ends this transaction), not ready,
          // or a second key of one message.
          this.#log.warn({ id: e.value, key: e.key, state: rec?.state }, 'stale due key dropped');
          continue;
        }
        store.update(rec, () => {
          rec.state = 'leased';
          rec.lease = makeLease(opts.owner, expiresAt);
          // The attempt now under way tests its destinations again; its settle ties it anew.
          if (rec.waitFor !== undefined) rec.waitFor = undefined;
          return true;
        }, delta);
        out.push(rec);
        bytes += rec.size;
      }
      delta.applyTo(store.counters);
      return out;
    });
  }

  /** Read phase of lease: choose the due keys, before any write touches the index. */
  #pickDue(nowMs: number, limit: number, skip?: ReadonlySet<string>): DueEntry[] {
    const iters: Iterator<DueEntry>[] = [];
    const heads: (DueEntry | undefined)[] = [];
    // The skipped keys are read past, not picked: the range holds them on top of the limit.
    const next = (it: Iterator<DueEntry>): DueEntry | undefined => {
      for (let r = it.next(); !r.done; r = it.next()) if (skip === undefined || !skip.has(r.value.value)) return r.value;
      return undefined;
    };
    for (const p of PRIORITIES) {
      const it = this.#store.due.getRange({ ...dueRange(p, nowMs), limit: limit + (skip?.size ?? 0) })[Symbol.iterator]() as Iterator<DueEntry>;
      iters.push(it);
      heads.push(next(it));
    }
    const picked: DueEntry[] = [];
    try {
      while (picked.length < limit) {
        const p = this.#rotation.pick((q) => heads[q] !== undefined);
        if (p < 0) break;
        picked.push(heads[p]!);
        heads[p] = next(iters[p]!);
      }
    } finally {
      for (const it of iters) it.return?.();
    }
    return picked;
  }

  /**
   * Extend the leases `owner` holds on these messages to now + leaseMs (never shortened), in
   * one write transaction: a delivery in flight renews its lease well before it expires, so
   * a transaction that outlasts the lease time (a slow reply to the final ".") is not
   * reclaimed and sent again. Returns the ids whose lease is no longer the owner's (reclaimed,
   * taken, held, settled or removed): nothing is written for them.
   */
  renew(ids: readonly string[], owner: string, leaseMs?: number): Promise<string[]> {
    if (ids.length === 0) return Promise.resolve([]);
    return this.#write('renew', () => {
      const expiresAt = Math.ceil(this.#clock() + (leaseMs ?? this.#leaseMs));
      const store = this.#store;
      const recs = ids.map((id) => store.read(id));
      const delta = new CounterDelta();
      const lost: string[] = [];
      for (let i = 0; i < ids.length; i++) {
        const rec = recs[i];
        if (rec === undefined || rec.state !== 'leased' || rec.lease?.owner !== owner) {
          lost.push(ids[i]!);
          continue;
        }
        const lease = rec.lease;
        if (lease.expiresAt >= expiresAt) continue;
        store.update(rec, () => {
          rec.lease = makeLease(owner, expiresAt);
          return true;
        }, delta);
      }
      delta.applyTo(store.counters);
      return lost;
    });
  }

  /** Return every lease with expiresAt <= now to 'ready' (a range read of the lease index). */
  reclaimExpired(): Promise<number> {
    return this.#write('reclaim', () => this.reclaimIn(Math.floor(this.#clock())));
  }

  /**
   * Return every leased message to ready, whoever holds it. For a node starting up as the
   * only deliverer of this folder: its previous incarnation's leases are all dead, and
   * waiting for them to expire would delay that mail by up to a lease time.
   */
  releaseAll(): Promise<number> {
    return this.#write('reclaim', () => this.reclaimIn(MAX_TIME_MS));
  }

  /** Whether a lease has expired by `nowMs` (a read: open starts a write only then). */
  anyExpired(nowMs: number): boolean {
    for (const _ of this.#store.leases.getKeys({ ...expiredLeaseRange(nowMs), limit: 1 })) return true;
    return false;
  }

  /** Inside a write transaction: reclaim expired leases, returns how many. */
  reclaimIn(nowMs: number): number {
    const store = this.#store;
    // Read phase: the expired keys (the loop below deletes keys of the range it read) and
    // their records, decoded, before any write.
    const expired = Array.from(store.leases.getRange(expiredLeaseRange(nowMs))) as { key: LeaseKey; value: string }[];
    const recs = readOnce(expired, (id) => store.read(id));
    const delta = new CounterDelta();
    let n = 0;
    for (let i = 0; i < expired.length; i++) {
      const e = expired[i]!;
      const rec = recs[i];
      void store.leases.remove(e.key);
      if (rec === undefined || rec.state !== 'leased') {
        this.#log.warn({ id: e.value, key: e.key, state: rec?.state }, 'stale lease key dropped');
        continue;
      }
      // nextAttemptAt is kept: it is in the past, so the message is due at once and keeps
      // its place ahead of messages that became due later.
      store.update(rec, () => {
        rec.state = 'ready';
        rec.lease = undefined;
        return true;
      }, delta);
      n++;
    }
    delta.applyTo(store.counters);
    if (n > 0) this.#log.debug({ reclaimed: n }, 'expired leases reclaimed');
    return n;
  }
}

/**
 * The record each index entry names, read once per id: a later entry naming the same message
 * gets undefined (a stale second key), as it would have after the first one's write.
 */
function readOnce<E extends { value: string }>(entries: E[], read: (id: string) => MessageRecord | undefined): (MessageRecord | undefined)[] {
  const seen = new Set<string>();
  return entries.map((e) => {
    if (seen.has(e.value)) return undefined;
    seen.add(e.value);
    return read(e.value);
  });
}
