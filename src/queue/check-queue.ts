// The queue's integrity check and repair: walks the records, the bodies, both indexes, the
// counters and the stored seq, and reports every place where they disagree with the records
// (docs/queue.md "Invariants"). With repair, in the same write transaction, after every read:
// undecodable records and bodies without a record are set aside (kept, RecordStore.setAside),
// indexes and counters are rebuilt from the records, the seq raised to the highest in use.
// Run by `postern queue check` (checkQueueFolder) and by the queue itself when it meets a
// corrupt record (checkQueue inside its write transaction).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { PosternError } from '../errors.js';
import { CounterDelta } from './counters.js';
import { LAYOUT_VERSION, META, dueKey, leaseKey, type DueKey, type LeaseKey } from './keys.js';
import { decodeRecord } from './records.js';
import { RecordStore, openQueueEnv } from './record-store.js';

export type QueueProblemKind =
  | 'undecodable-record'
  | 'record-without-body'
  | 'body-without-record'
  | 'stale-due-entry'
  | 'missing-due-entry'
  | 'stale-lease-entry'
  | 'missing-lease-entry'
  | 'counter'
  | 'seq';

export interface QueueProblem {
  kind: QueueProblemKind;
  /** The message id concerned, when there is one. */
  id?: string;
  /** What is wrong, in words. */
  detail: string;
}

export interface QueueCheckResult {
  /** Records that decode (the ones counted and indexed). */
  records: number;
  problems: QueueProblem[];
  /** Whether the problems were fixed (repair asked and there was something to fix). */
  repaired: boolean;
  /** The highest seq among the records. */
  maxSeq: number;
}

/** What checkQueueFolder found (and, with repair, fixed) in a queue folder. */
export interface QueueCheckReport {
  /** Records that decode. */
  records: number;
  problems: QueueProblem[];
  repaired: boolean;
  /** Problems still found after the repair (without repair: all of them). */
  remaining: number;
  /** The entries set aside (now or before), without their bytes. */
  corrupt: { id: string; at: number; reason: string; recordBytes: number; bodyBytes: number }[];
}

const keyText = (k: readonly number[]): string => JSON.stringify(k);

/**
 * Check the queue in the folder `path` (a stopped node's data dir). Without `repair` the
 * environment is opened read-only and nothing is written; with it, one write transaction
 * repairs what was found and a second check counts what is left (`remaining`, 0 when the
 * repair worked). A folder without a queue is refused, and nothing is created in it.
 */
export function checkQueueFolder(path: string, opts: { repair: boolean; mapSizeBytes?: number; now?: () => number }): QueueCheckReport {
  if (!existsSync(join(path, 'data.mdb'))) throw new PosternError('PST_ERR_QUEUE_MISSING', `${path} holds no queue (no data.mdb)`);
  const env = openQueueEnv(path, opts.mapSizeBytes, !opts.repair);
  try {
    const store = new RecordStore(env, !opts.repair);
    const layout = store.meta.get(META.layout);
    if (layout !== LAYOUT_VERSION) throw new PosternError('PST_ERR_QUEUE_CORRUPT', `queue layout ${String(layout)} is not ${LAYOUT_VERSION}`);
    const nowMs = Math.floor((opts.now ?? Date.now)());
    const r = opts.repair ? env.transactionSync(() => checkQueue(store, { repair: true, nowMs })) : checkQueue(store, { repair: false, nowMs });
    const remaining = r.repaired ? checkQueue(store, { repair: false, nowMs }).problems.length : r.problems.length;
    const corrupt = store.corruptEntries().map((e) => ({ id: e.id, at: e.at, reason: e.reason, recordBytes: e.record?.length ?? 0, bodyBytes: e.body?.length ?? 0 }));
    return { records: r.records, problems: r.problems, repaired: r.repaired, remaining, corrupt };
  } finally {
    void env.close();
  }
}

/**
 * Check the queue in `store`. Runs synchronously, so its reads see one snapshot; with
 * `repair` it must run inside a write transaction (a transaction callback or transactionSync)
 * and writes only after every read. O(records + index entries + counters).
 */
export function checkQueue(store: RecordStore, opts: { repair: boolean; nowMs: number }): QueueCheckResult {
  const problems: QueueProblem[] = [];
  const aside: [id: string, reason: string][] = [];
  const wantDue = new Map<string, DueKey>();
  const wantLease = new Map<string, LeaseKey>();
  const recount = new CounterDelta();
  let records = 0;
  let maxSeq = 0;

  // Records (and their bodies).
  for (const { key, value } of store.messages.getRange({})) {
    const id = key;
    let rec;
    try {
      rec = decodeRecord(value, id);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      problems.push({ kind: 'undecodable-record', id, detail: `record ${id} cannot be decoded: ${why}` });
      aside.push([id, `undecodable: ${why}`]);
      continue;
    }
    if (!store.bodies.doesExist(id)) {
      problems.push({ kind: 'record-without-body', id, detail: `record ${id} has no body` });
      aside.push([id, 'record without body']);
      continue;
    }
    records++;
    recount.add(rec, 1);
    if (rec.seq > maxSeq) maxSeq = rec.seq;
    if (rec.state === 'ready') wantDue.set(id, dueKey(rec.priority, rec.nextAttemptAt, rec.seq));
    else if (rec.state === 'leased') wantLease.set(id, leaseKey(rec.lease!.expiresAt, rec.seq));
  }
  for (const id of store.bodies.getKeys({}) as Iterable<string>) {
    if (!store.messages.doesExist(id)) {
      problems.push({ kind: 'body-without-record', id, detail: `body ${id} has no record` });
      aside.push([id, 'body without record']);
    }
  }

  // Indexes: each entry must be the key its record's state implies, each such key present.
  const staleDue = indexCheck(store.due.getRange({}) as Iterable<{ key: DueKey; value: string }>, wantDue, 'due', 'ready', problems);
  const staleLease = indexCheck(store.leases.getRange({}) as Iterable<{ key: LeaseKey; value: string }>, wantLease, 'lease', 'leased', problems);

  // Counters: every stored key against the recount (zeros are not stored).
  const want = new Map(recount.entries());
  const fixCounters: [string, number][] = [];
  const stored = new Map<string, number>();
  for (const { key, value } of store.counters.getRange({})) stored.set(key, value);
  for (const key of new Set([...stored.keys(), ...want.keys()])) {
    const s = stored.get(key) ?? 0;
    const w = want.get(key) ?? 0;
    if (s === w) continue;
    problems.push({ kind: 'counter', detail: `counter ${key} is ${s}, the records give ${w}` });
    fixCounters.push([key, w]);
  }

  // The seq is handed out from meta: below a stored record's, ids would repeat.
  const storedSeq = store.meta.get(META.seq) ?? 0;
  if (maxSeq > storedSeq) problems.push({ kind: 'seq', detail: `stored seq ${storedSeq} is below the highest in use, ${maxSeq}` });

  const repair = opts.repair && problems.length > 0;
  if (repair) {
    for (const [id, reason] of aside) store.setAside(id, reason, opts.nowMs);
    for (const key of staleDue.remove) void store.due.remove(key);
    for (const key of staleLease.remove) void store.leases.remove(key);
    for (const [id, key] of staleDue.add) void store.due.put(key, id);
    for (const [id, key] of staleLease.add) void store.leases.put(key, id);
    for (const [key, w] of fixCounters) {
      if (w === 0) void store.counters.remove(key);
      else void store.counters.put(key, w);
    }
    if (maxSeq > storedSeq) void store.meta.put(META.seq, maxSeq);
  }
  return { records, problems, repaired: repair, maxSeq };
}

/** Compare one index with the keys the records imply; what to remove and add to repair it. */
function indexCheck<K extends DueKey | LeaseKey>(
  entries: Iterable<{ key: K; value: string }>,
  want: Map<string, K>,
  name: 'due' | 'lease',
  state: 'ready' | 'leased',
  problems: QueueProblem[],
): { remove: K[]; add: [string, K][] } {
  const remove: K[] = [];
  const found = new Set<string>();
  for (const { key, value: id } of entries) {
    const w = want.get(id);
    if (w !== undefined && keyText(w) === keyText(key)) {
      found.add(id);
      continue;
    }
    problems.push({
      kind: name === 'due' ? 'stale-due-entry' : 'stale-lease-entry',
      id,
      detail: `${name} entry ${keyText(key)} -> ${id} ${w === undefined ? `has no ${state} record` : `is not the record's key ${keyText(w)}`}`,
    });
    remove.push(key);
  }
  const add: [string, K][] = [];
  for (const [id, key] of want) {
    if (found.has(id)) continue;
    problems.push({ kind: name === 'due' ? 'missing-due-entry' : 'missing-lease-entry', id, detail: `record ${id} is ${state} but its ${name} entry ${keyText(key)} is missing` });
    add.push([id, key]);
  }
  return { remove, add };
}
