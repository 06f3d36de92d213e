// The queue's sub-databases in one LMDB environment (records, bodies, the due, lease and wait
// indexes, counters, meta, and records set aside as corrupt) and the steps, run inside a
// write transaction, that keep a record, the index key its state implies and the counters in
// step. The core store (store.ts), leasing (lease-manager.ts), administration
// (queue-admin.ts) and the check (check-queue.ts) change records only through these.
// Layout and invariants: docs/queue.md.
import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import { Packr } from 'msgpackr';
import { PosternError } from '../errors.js';
import { CounterDelta, readCounters, waitsOf } from './counters.js';
import { COUNTER, dueKey, leaseKey, scheduledRange, waitKey, type DueKey, type LeaseKey, type WaitKey } from './keys.js';
import { decodeRecord, encodeRecord } from './records.js';
import { PRIORITIES, type MessageRecord, type QueueCounts } from './types.js';

/**
 * Runs `fn` inside the next batched write transaction and resolves once it committed
 * (Queue's write(): closed check, error mapping, in-flight tracking).
 */
export type Writer = <T>(op: string, fn: () => T) => Promise<T>;

const DEFAULT_MAP_BYTES = 1024 * 1024 * 1024;

/** The queue's LMDB environment in the folder `path` (read-only for a check of a stopped node). */
export function openQueueEnv(path: string, mapSizeBytes: number | undefined, readOnly: boolean): RootDatabase {
  return openLmdb({
    path,
    noSubdir: false, // path is a folder even if its name has a dot
    mapSize: mapSizeBytes ?? DEFAULT_MAP_BYTES,
    maxDbs: 16,
    readOnly,
    // Full sync on every commit (never noSync / noMetaSync), and LMDB's classic commit: the
    // data pages are fdatasync'd and the meta page written through an O_DSYNC descriptor
    // before the commit returns, so a write promise resolves only for data on disk.
    // overlappingSync (lmdb-js's default on Linux) is turned off: its promises also resolve
    // after the flush in 3.5.6, but after a failed commit its flush promise never settles
    // and close() hangs on it; throughput measured the same (docs/queue.md).
    overlappingSync: false,
  });
}

export function notFound(id: string): PosternError {
  return new PosternError('PST_ERR_QUEUE_NOT_FOUND', `no message ${id} in the queue`);
}

/** What was stored under one id and was set aside: the raw record and body bytes, when, why. */
export interface CorruptEntry {
  id: string;
  /** ms epoch. */
  at: number;
  reason: string;
  /** The record's bytes as they were stored; null when there was only a body. */
  record: Buffer | null;
  body: Buffer | null;
}

/** Key of the 'corrupt' sub-database: the same id can be set aside more than once. */
type CorruptKey = [id: string, at: number];

// Plain MessagePack (maps, bin) for the entries set aside: any msgpack tool reads them, and a
// Packr without records never mints structures (the records' own Packr is in records.ts).
const corruptPackr = new Packr({ useRecords: false });

export class RecordStore {
  readonly env: RootDatabase;
  readonly messages: Database<Buffer, string>;
  readonly bodies: Database<Buffer, string>;
  readonly due: Database<string, DueKey>;
  readonly leases: Database<string, LeaseKey>;
  /**
   * The wait index; null only in a read-only environment of a queue written before it
   * existed (nothing waits there: the check treats it as empty).
   */
  readonly waits: Database<string, WaitKey> | null;
  readonly counters: Database<number, string>;
  readonly meta: Database<number, string>;
  /** Records and bodies set aside; null only in a read-only environment that has none yet. */
  readonly corrupt: Database<Buffer, CorruptKey> | null;
  /**
   * Records found undecodable by read()/decode() and not yet set aside: id -> why. The queue
   * repairs (check-queue.ts) in the write transaction that found one, or in one of its own
   * when a plain read found it; `onUndecodable` tells it.
   */
  readonly undecodable = new Map<string, string>();
  onUndecodable: (() => void) | null = null;

  /** `readOnly`: the environment was opened read-only (the check of a stopped node). */
  constructor(env: RootDatabase, readOnly = false) {
    this.env = env;
    // In a read-only environment openDB gives undefined for a sub-database that does not exist.
    const open = <V, K extends string | CorruptKey | DueKey | LeaseKey | WaitKey>(name: string, encoding: 'binary' | 'string' | 'ordered-binary'): Database<V, K> => {
      const db = env.openDB<V, K>({ name, encoding }) as Database<V, K> | undefined;
      if (db === undefined) throw new PosternError('PST_ERR_QUEUE_CORRUPT', `the folder holds no queue (no '${name}' sub-database)`);
      return db;
    };
    // Every value is raw bytes or a number: the record Packr lives in records.ts, the bodies
    // are stored as given (no msgpack copy), and lmdb-js never mints structures of its own.
    this.messages = open('msg', 'binary');
    this.bodies = open('body', 'binary');
    this.due = open('due', 'string');
    this.leases = open('lease', 'string');
    this.waits = readOnly ? ((env.openDB<string, WaitKey>({ name: 'wait', encoding: 'string' }) as Database<string, WaitKey> | undefined) ?? null) : open('wait', 'string');
    this.counters = open('count', 'ordered-binary');
    this.meta = open('meta', 'ordered-binary');
    this.corrupt = readOnly
      ? ((env.openDB<Buffer, CorruptKey>({ name: 'corrupt', encoding: 'binary', keyEncoding: 'ordered-binary' }) as Database<Buffer, CorruptKey> | undefined) ?? null)
      : env.openDB<Buffer, CorruptKey>({ name: 'corrupt', encoding: 'binary', keyEncoding: 'ordered-binary' });
  }

  /** The stored record, decoded into a fresh object; undefined when absent or undecodable. */
  read(id: string): MessageRecord | undefined {
    const raw = this.messages.getBinaryFast(id);
    return raw === undefined ? undefined : this.decode(id, raw);
  }

  /**
   * Decode the bytes stored under `id`; undefined when they are not a record (noted in
   * `undecodable`, for the repair that sets it aside). Nothing reads a corrupt record as a
   * message, and nothing throws on one half-way through a transaction.
   */
  decode(id: string, raw: Uint8Array): MessageRecord | undefined {
    try {
      return decodeRecord(raw, id);
    } catch (err) {
      this.undecodable.set(id, err instanceof Error ? err.message : String(err));
      this.onUndecodable?.();
      return undefined;
    }
  }

  /**
   * Inside a write transaction: move what is stored under `id` (record, body, or both) into
   * the 'corrupt' sub-database with the time and the reason. Index keys and counters are the
   * caller's (check-queue.ts rebuilds them).
   */
  setAside(id: string, reason: string, atMs: number): void {
    const record = this.messages.getBinary(id) ?? null;
    const body = this.bodies.getBinary(id) ?? null;
    if (record === null && body === null) return;
    const entry: CorruptEntry = { id, at: atMs, reason, record, body };
    void this.corrupt!.put([id, atMs], corruptPackr.pack(entry));
    void this.messages.remove(id);
    void this.bodies.remove(id);
  }

  /** How many records or bodies were set aside. */
  corruptCount(): number {
    return this.corrupt?.getCount() ?? 0;
  }

  /** The entries set aside, oldest id first, at most `limit`. */
  corruptEntries(limit = Infinity): CorruptEntry[] {
    const out: CorruptEntry[] = [];
    if (this.corrupt === null) return out;
    for (const { key, value } of this.corrupt.getRange(Number.isFinite(limit) ? { limit } : {})) {
      let e: Partial<CorruptEntry> | null = null;
      try {
        e = corruptPackr.unpack(value) as Partial<CorruptEntry> | null;
      } catch {
        // listed below as unreadable: the list itself must not fail on a damaged entry
      }
      const ok = e !== null && typeof e === 'object';
      out.push({
        id: ok && typeof e!.id === 'string' ? e!.id : String(key[0]),
        at: ok && typeof e!.at === 'number' ? e!.at : Number(key[1]),
        reason: ok && typeof e!.reason === 'string' ? e!.reason : '(entry unreadable)',
        record: ok && Buffer.isBuffer(e!.record) ? e!.record : null,
        body: ok && Buffer.isBuffer(e!.body) ? e!.body : null,
      });
    }
    return out;
  }

  /**
   * Counters as of the last commit. total/byPriority/leased/held/byDomain are stored
   * counters (O(1), O(domains)); scheduled is counted in the due index past `nowMs`, so this
   * costs O(messages scheduled in the future) cursor steps; ready = ready - scheduled.
   */
  counts(nowMs: number): QueueCounts {
    const c = readCounters(this.counters);
    let scheduled = 0;
    for (const p of PRIORITIES) scheduled += this.due.getCount(scheduledRange(p, nowMs));
    return {
      total: c.total,
      byPriority: c.byPriority,
      byState: { ready: c.readyAll - scheduled, scheduled, leased: c.byState.leased, held: c.byState.held },
      byDomain: c.byDomain,
    };
  }

  /**
   * Messages queued and not held (two counter reads), and the arrival time of the oldest one not
   * held: ids sort by arrival (ids.ts), so it is the first record in id order that is not held.
   * Only the first `scan` records are looked at, so a crowd of old held (quarantined) messages
   * costs a bounded read, never a walk of the queue; when all of them are held, `oldestAt` is
   * null (unknown). For the queue alerts (docs/alerts.md), sampled a few times a minute.
   */
  backlog(scan: number): { queued: number; oldestAt: number | null } {
    const queued = (this.counters.get(COUNTER.total) ?? 0) - (this.counters.get(COUNTER.held) ?? 0);
    let oldestAt: number | null = null;
    for (const { key, value } of this.messages.getRange({ limit: scan })) {
      const rec = this.decode(key, value);
      if (rec !== undefined && rec.state !== 'held') {
        oldestAt = rec.receivedAt;
        break;
      }
    }
    return { queued, oldestAt };
  }

  /**
   * Records in id (arrival) order after the exclusive cursor `after` (or, without one, from the
   * first id >= `start`), decoded lazily; a corrupt one is left out (and noted in `undecodable`).
   */
  *records(after?: string, start?: string): Generator<MessageRecord> {
    const from = after || start;
    for (const { key, value } of this.messages.getRange(from ? { start: from } : {})) {
      if (after && key === after) continue;
      const rec = this.decode(key, value);
      if (rec !== undefined) yield rec;
    }
  }

  /** The record, or PST_ERR_QUEUE_NOT_FOUND. */
  load(id: string): MessageRecord {
    const rec = this.read(id);
    if (rec === undefined) throw notFound(id);
    return rec;
  }

  /** Inside a write transaction: remove the index keys that the record's current state implies. */
  unindex(rec: MessageRecord): void {
    if (rec.state === 'ready') {
      void this.due.remove(dueKey(rec.priority, rec.nextAttemptAt, rec.seq));
      for (const d of waitsOf(rec)) void this.waits!.remove(waitKey(d, rec.seq));
    } else if (rec.state === 'leased' && rec.lease !== undefined) void this.leases.remove(leaseKey(rec.lease.expiresAt, rec.seq));
  }

  /** Inside a write transaction: write the record and the index keys its state implies. */
  put(rec: MessageRecord): void {
    void this.messages.put(rec.id, encodeRecord(rec));
    if (rec.state === 'ready') {
      void this.due.put(dueKey(rec.priority, rec.nextAttemptAt, rec.seq), rec.id);
      for (const d of waitsOf(rec)) void this.waits!.put(waitKey(d, rec.seq), rec.id);
    } else if (rec.state === 'leased' && rec.lease !== undefined) void this.leases.put(leaseKey(rec.lease.expiresAt, rec.seq), rec.id);
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
