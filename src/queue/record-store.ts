// The queue's sub-databases in one LMDB environment (records, bodies, the due and lease
// indexes, counters, meta) and the steps, run inside a write transaction, that keep a record,
// the index key its state implies and the counters in step. The core store (store.ts),
// leasing (lease-manager.ts) and administration (queue-admin.ts) change records only
// through these. Layout and invariants: docs/queue.md.
import type { Database, RootDatabase } from 'lmdb';
import { PosternError } from '../errors.js';
import { CounterDelta } from './counters.js';
import { dueKey, leaseKey, type DueKey, type LeaseKey } from './keys.js';
import { decodeRecord, encodeRecord } from './records.js';
import type { MessageRecord } from './types.js';

/**
 * Runs `fn` inside the next batched write transaction and resolves once it committed
 * (Queue's write(): closed check, error mapping, in-flight tracking).
 */
export type Writer = <T>(op: string, fn: () => T) => Promise<T>;

export function notFound(id: string): PosternError {
  return new PosternError('PST_ERR_QUEUE_NOT_FOUND', `no message ${id} in the queue`);
}

export class RecordStore {
  readonly env: RootDatabase;
  readonly messages: Database<Buffer, string>;
  readonly bodies: Database<Buffer, string>;
  readonly due: Database<string, DueKey>;
  readonly leases: Database<string, LeaseKey>;
  readonly counters: Database<number, string>;
  readonly meta: Database<number, string>;

  constructor(env: RootDatabase) {
    this.env = env;
    // Every value is raw bytes or a number: the record Packr lives in records.ts, the bodies
    // are stored as given (no msgpack copy), and lmdb-js never mints structures of its own.
    this.messages = env.openDB<Buffer, string>({ name: 'msg', encoding: 'binary' });
    this.bodies = env.openDB<Buffer, string>({ name: 'body', encoding: 'binary' });
    this.due = env.openDB<string, DueKey>({ name: 'due', encoding: 'string' });
    this.leases = env.openDB<string, LeaseKey>({ name: 'lease', encoding: 'string' });
    this.counters = env.openDB<number, string>({ name: 'count', encoding: 'ordered-binary' });
    this.meta = env.openDB<number, string>({ name: 'meta', encoding: 'ordered-binary' });
  }

  /** The stored record, decoded into a fresh object, or undefined. */
  read(id: string): MessageRecord | undefined {
    const raw = this.messages.getBinaryFast(id);
    return raw === undefined ? undefined : decodeRecord(raw);
  }

  /** The record, or PST_ERR_QUEUE_NOT_FOUND. */
  load(id: string): MessageRecord {
    const rec = this.read(id);
    if (rec === undefined) throw notFound(id);
    return rec;
  }

  /** Inside a write transaction: remove the index key that the record's current state implies. */
  unindex(rec: MessageRecord): void {
    if (rec.state === 'ready') void this.due.remove(dueKey(rec.priority, rec.nextAttemptAt, rec.seq));
    else if (rec.state === 'leased' && rec.lease !== undefined) void this.leases.remove(leaseKey(rec.lease.expiresAt, rec.seq));
  }

  /** Inside a write transaction: write the record and the index key its state implies. */
  put(rec: MessageRecord): void {
    void this.messages.put(rec.id, encodeRecord(rec));
    if (rec.state === 'ready') void this.due.put(dueKey(rec.priority, rec.nextAttemptAt, rec.seq), rec.id);
    else if (rec.state === 'leased' && rec.lease !== undefined) void this.leases.put(leaseKey(rec.lease.expiresAt, rec.seq), rec.id);
  }

  /**
   * Inside a write transaction: change a stored record in place (`rec` as read, in its stored
   * form) and store it, or, when `change` returns false, delete it with its body. Its index
   * key follows its state. The counter changes go into `delta` when given (the caller applies
   * it once for many records: one read-modify-write per counter key), else they are applied
   * here. Returns whether the record was kept.
   */
  update(rec: MessageRecord, change: () => boolean, delta?: CounterDelta): boolean {
    const d = delta ?? new CounterDelta();
    d.add(rec, -1);
    this.unindex(rec);
    const keep = change();
    if (keep) {
      this.put(rec);
      d.add(rec, 1);
    } else {
      void this.messages.remove(rec.id);
      void this.bodies.remove(rec.id);
    }
    if (delta === undefined) d.applyTo(this.counters);
    return keep;
  }
}
