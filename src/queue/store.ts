// The durable priority queue (class Queue): one LMDB environment holding message records,
// raw bodies, the due (schedule) index, the lease index, counters and meta. Owns every state
// transition and keeps the invariants: a 'ready' message has exactly one due key, a 'leased'
// one exactly one lease key, a 'held' one neither; counters change in the same transaction.
// Key layouts: keys.ts; record encoding: records.ts; fairness: fairness.ts; docs/queue.md.
import { mkdirSync } from 'node:fs';
import { open as openLmdb, type Database, type RootDatabase } from 'lmdb';
import { PosternError } from '../errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { CounterDelta, readCounters } from './counters.js';
import { FairRotation } from './fairness.js';
import { makeId, seqOfId } from './ids.js';
import {
  COUNTER,
  LAYOUT_VERSION,
  META,
  dueKey,
  dueRange,
  expiredLeaseRange,
  leaseKey,
  scheduledRange,
  type DueKey,
  type LeaseKey,
} from './keys.js';
import { decodeRecord, encodeRecord, isFinal, makeLease, makeMessage, makeReply } from './records.js';
import { SuppressionList } from './suppressions.js';
import { EventLog } from './events.js';
import type {
  EnvelopeInput,
  MessageRecord,
  Priority,
  QueueCounts,
  Recipient,
  QueueOptions,
  QueueStats,
  RecipientOutcome,
  ReplyRecord,
} from './types.js';

export * from './types.js';
export { isFinal } from './records.js';
export { FAIRNESS_CYCLE, STARVATION_BOUND } from './fairness.js';

const DEFAULT_MAP_BYTES = 1024 * 1024 * 1024;
const DEFAULT_LEASE_MS = 300_000;
/** How long a failed write waits for lmdb-js to report the underlying error. */
const CAUSE_WAIT_MS = 1000;

/** The enqueues of one lmdb-js event-turn batch (= one write transaction). */
interface EnqueueBatch {
  readonly delta: CounterDelta;
  maxSeq: number;
}

const noop = (): void => {};
const PRIORITIES: readonly Priority[] = [0, 1, 2];

function closedError(): PosternError {
  return new PosternError('PST_ERR_QUEUE_CLOSED');
}

function notFound(id: string): PosternError {
  return new PosternError('PST_ERR_QUEUE_NOT_FOUND', `no message ${id} in the queue`);
}

function toBody(body: Buffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (!Array.isArray(body)) throw new TypeError('enqueue: body must be a Buffer or an array of Buffers');
  if (body.length === 1 && Buffer.isBuffer(body[0])) return body[0];
  return Buffer.concat(body); // the one copy of a chunked body
}

function checkEnvelope(env: EnvelopeInput): Priority {
  if (env === null || typeof env !== 'object') throw new TypeError('enqueue: envelope required');
  if (typeof env.sender !== 'string') throw new TypeError('enqueue: sender must be a string');
  if (!Array.isArray(env.recipients) || env.recipients.length === 0) {
    throw new TypeError('enqueue: at least one recipient');
  }
  for (const r of env.recipients) {
    if (r === null || typeof r !== 'object' || typeof r.address !== 'string') {
      throw new TypeError('enqueue: every recipient needs an address');
    }
  }
  const p = env.priority ?? 1;
  if (p !== 0 && p !== 1 && p !== 2) throw new RangeError(`enqueue: priority must be 0, 1 or 2, not ${String(p)}`);
  return p;
}

function waitAtMost<T>(p: PromiseLike<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    timer.unref();
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        resolve(e as T);
      },
    );
  });
}

/** The largest time a Date can hold: every lease expires before it. */
const MAX_TIME_MS = 8.64e15;

export class Queue {
  /** The suppression list (suppressions.ts), in this environment's 'suppress' sub-database. */
  readonly suppressions: SuppressionList;
  /** The durable event log for event webhooks (events.ts), sub-database 'events'. */
  readonly events: EventLog;
  private readonly env: RootDatabase;
  private readonly messages: Database<Buffer, string>;
  private readonly bodies: Database<Buffer, string>;
  private readonly due: Database<string, DueKey>;
  private readonly leases: Database<string, LeaseKey>;
  private readonly counters: Database<number, string>;
  private readonly meta: Database<number, string>;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly leaseMs: number;
  private readonly rotation = new FairRotation();
  private seq: number;
  private batch: EnqueueBatch | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  private inflight = 0;
  private idle: (() => void) | null = null;
  private viewDepth = 0;
  private readonly failures = new WeakSet<object>();
  private readonly st: QueueStats = { commits: 0, enqueueCommits: 0, messagesCommitted: 0, bytesCommitted: 0, failedCommits: 0 };

  private constructor(env: RootDatabase, opts: QueueOptions) {
    this.env = env;
    this.log = opts.logger ?? silentLogger();
    this.clock = opts.now ?? Date.now;
    this.leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    // Every value is raw bytes or a number: the record Packr lives in records.ts, the bodies
    // are stored as given (no msgpack copy), and lmdb-js never mints structures of its own.
    this.messages = env.openDB<Buffer, string>({ name: 'msg', encoding: 'binary' });
    this.bodies = env.openDB<Buffer, string>({ name: 'body', encoding: 'binary' });
    this.due = env.openDB<string, DueKey>({ name: 'due', encoding: 'string' });
    this.leases = env.openDB<string, LeaseKey>({ name: 'lease', encoding: 'string' });
    this.counters = env.openDB<number, string>({ name: 'count', encoding: 'ordered-binary' });
    this.meta = env.openDB<number, string>({ name: 'meta', encoding: 'ordered-binary' });
    this.seq = 0;
    // --- suppression list (HTTP admin): its own sub-database, written through this.write().
    this.suppressions = new SuppressionList(
      env.openDB<string, string>({ name: 'suppress', encoding: 'string' }),
      (op, fn) => this.write(op, fn),
      () => this.clock(),
      () => this.checkRead(),
    );
    // --- end suppression list
    this.events = new EventLog(env.openDB<string, number>({ name: 'events', encoding: 'string', keyEncoding: 'ordered-binary' }));
    // 'beforecommit' runs once per event-turn batch, i.e. once per LMDB write transaction.
    env.on('beforecommit', () => {
      this.st.commits++;
      if (this.batch !== null) this.st.enqueueCommits++; // this transaction carries enqueues
      this.batch = null; // the next enqueue belongs to the next transaction
      queueMicrotask(this.guardBatchPromise);
    });
  }

  /**
   * lmdb-js 3.5 creates one extra commit promise per event-turn batch (the batch-start
   * instruction) and drops it; when that commit fails it rejects with nobody listening and
   * Node's default unhandled-rejection mode kills the process. It is created right after the
   * 'beforecommit' callbacks, in the same task, so a microtask queued from there finds it as
   * the current commit promise. Handling it changes nothing else: our own operations still
   * see the failure through their own promises.
   */
  private readonly guardBatchPromise = (): void => {
    (this.env.committed as PromiseLike<boolean>).then(undefined, noop);
  };

  /** Open (creating the folder), check the layout, load the sequence, reclaim expired leases. */
  static open(opts: QueueOptions): Queue {
    const started = performance.now();
    mkdirSync(opts.path, { recursive: true });
    const env = openLmdb({
      path: opts.path,
      noSubdir: false, // opts.path is a folder even if its name has a dot
      mapSize: opts.mapSizeBytes ?? DEFAULT_MAP_BYTES,
      maxDbs: 16,
      // Full sync on every commit (never noSync / noMetaSync), and LMDB's classic commit: the
      // data pages are fdatasync'd and the meta page written through an O_DSYNC descriptor
      // before the commit returns, so a write promise resolves only for data on disk.
      // overlappingSync (lmdb-js's default on Linux) is turned off: its promises also resolve
      // after the flush in 3.5.6, but after a failed commit its flush promise never settles
      // and close() hangs on it; throughput measured the same (docs/queue.md).
      overlappingSync: false,
    });
    let q: Queue;
    try {
      q = new Queue(env, opts);
      q.recover();
    } catch (err) {
      void env.close();
      throw err;
    }
    q.log.info(
      { path: opts.path, seq: q.seq, messages: q.counters.get(COUNTER.total) ?? 0, ms: Math.round(performance.now() - started) },
      'queue opened',
    );
    return q;
  }

  private recover(): void {
    const layout = this.meta.get(META.layout);
    if (layout === undefined) {
      this.meta.putSync(META.layout, LAYOUT_VERSION);
    } else if (layout !== LAYOUT_VERSION) {
      throw new PosternError('PST_ERR_QUEUE_CORRUPT', `queue layout ${String(layout)} is not ${LAYOUT_VERSION}`);
    }
    this.seq = this.meta.get(META.seq) ?? 0;
    const nowMs = Math.floor(this.clock());
    // Only open a write transaction when there is something to reclaim.
    let any = false;
    for (const _ of this.leases.getKeys({ ...expiredLeaseRange(nowMs), limit: 1 })) any = true;
    if (any) {
      const n = this.env.transactionSync(() => this.reclaimIn(nowMs));
      this.log.info({ reclaimed: n }, 'expired leases returned to ready');
    }
  }

  // ---------------------------------------------------------------- writes

  /**
   * Store a message. Resolves with its id only once the transaction holding it is committed
   * and fsync'd; rejects PST_ERR_QUEUE_WRITE (cause = the LMDB/OS error) otherwise. The body
   * Buffer(s) must not be modified until the promise settles: a single Buffer is handed to
   * LMDB as is, an array is concatenated once.
   */
  async enqueue(env: EnvelopeInput, body: Buffer | Buffer[], reservedId?: string): Promise<string> {
    if (this.closed) throw closedError();
    const priority = checkEnvelope(env);
    const bytes = toBody(body);
    const now = this.clock();
    const receivedAt = Math.floor(now);
    const nextAttemptAt =
      env.notBefore !== undefined && env.notBefore > receivedAt ? Math.ceil(env.notBefore) : receivedAt;
    let seq: number;
    let id: string;
    if (reservedId === undefined) {
      seq = ++this.seq;
      id = makeId(receivedAt, seq);
    } else {
      const s = seqOfId(reservedId);
      if (s === undefined || s > this.seq) throw new RangeError(`enqueue: ${reservedId} is not an id from reserveId()`);
      seq = s;
      id = reservedId;
    }
    const rec = makeMessage(env, id, seq, priority, receivedAt, nextAttemptAt, bytes.length);
    const packed = encodeRecord(rec);
    this.inflight++;
    try {
      // Plain puts run entirely on lmdb-js's writer thread; all writes of this event turn
      // share one transaction, hence one fsync (group commit).
      const commit = this.bodies.put(id, bytes);
      void this.messages.put(id, packed);
      if (rec.state === 'ready') void this.due.put(dueKey(priority, nextAttemptAt, seq), id);
      const batch = this.currentBatch();
      batch.delta.add(rec, 1);
      if (seq > batch.maxSeq) batch.maxSeq = seq;
      await commit;
    } catch (err) {
      throw await this.writeError(err, 'enqueue');
    } finally {
      this.settled();
    }
    this.st.messagesCommitted++;
    this.st.bytesCommitted += bytes.length + packed.length;
    return id;
  }

  /**
   * Reserve the id a later enqueue(env, body, id) will store the message under, so the SMTP
   * session can name it in the Received header before the body is complete (as Postfix's
   * queue id). An id reserved and never used leaves a harmless gap in the sequence.
   */
  reserveId(): string {
    if (this.closed) throw closedError();
    return makeId(Math.floor(this.clock()), ++this.seq);
  }

  /**
   * The batch of the current event turn. Its first enqueue queues one transaction callback
   * that lmdb-js runs in the same LMDB transaction as the puts of this turn (after them): it
   * writes the summed counter changes and the highest seq once for the whole batch.
   */
  private currentBatch(): EnqueueBatch {
    let b = this.batch;
    if (b !== null) return b;
    const batch: EnqueueBatch = { delta: new CounterDelta(), maxSeq: 0 };
    this.batch = batch;
    this.env
      .transaction(() => {
        batch.delta.applyTo(this.counters);
        const stored = this.meta.get(META.seq) ?? 0;
        if (batch.maxSeq > stored) void this.meta.put(META.seq, batch.maxSeq);
      })
      .catch(noop); // a failed commit is reported through each enqueue's own promise
    return batch;
  }

  /**
   * Lease up to `limit` due messages (state ready, nextAttemptAt <= now), picking priorities
   * by the fairness rotation (fairness.ts). Each read of the due index is a range read that
   * starts at the first due key of a priority and stops at `now`: messages not yet due are
   * never touched. Leased messages move to the lease index with expiresAt = now + leaseMs.
   */
  lease(opts: { limit: number; owner: string; leaseMs?: number }): Promise<MessageRecord[]> {
    const limit = Math.floor(opts.limit);
    const leaseMs = opts.leaseMs ?? this.leaseMs;
    if (this.closed) return Promise.reject(closedError());
    if (typeof opts.owner !== 'string') return Promise.reject(new TypeError('lease: owner must be a string'));
    if (!(limit > 0)) return Promise.resolve([]);
    return this.write('lease', () => {
      const now = this.clock();
      const nowMs = Math.floor(now);
      const expiresAt = Math.ceil(now + leaseMs);
      const picked = this.pickDue(nowMs, limit);
      const delta = new CounterDelta();
      const out: MessageRecord[] = [];
      for (const e of picked) {
        void this.due.remove(e.key);
        const rec = this.read(e.value);
        if (rec === undefined || rec.state !== 'ready') {
          this.log.warn({ id: e.value, key: e.key, state: rec?.state }, 'stale due key dropped');
          continue;
        }
        delta.add(rec, -1);
        rec.state = 'leased';
        rec.lease = makeLease(opts.owner, expiresAt);
        void this.messages.put(rec.id, encodeRecord(rec));
        void this.leases.put(leaseKey(expiresAt, rec.seq), rec.id);
        delta.add(rec, 1);
        out.push(rec);
      }
      delta.applyTo(this.counters);
      return out;
    });
  }

  /** Read phase of lease: choose the due keys, before any write touches the index. */
  private pickDue(nowMs: number, limit: number): { key: DueKey; value: string }[] {
    type Entry = { key: DueKey; value: string };
    const iters: Iterator<Entry>[] = [];
    const heads: (Entry | undefined)[] = [];
    for (const p of PRIORITIES) {
      const it = this.due.getRange({ ...dueRange(p, nowMs), limit })[Symbol.iterator]() as Iterator<Entry>;
      iters.push(it);
      const r = it.next();
      heads.push(r.done ? undefined : r.value);
    }
    const picked: Entry[] = [];
    try {
      while (picked.length < limit) {
        const p = this.rotation.pick((q) => heads[q] !== undefined);
        if (p < 0) break;
        picked.push(heads[p]!);
        const r = iters[p]!.next();
        heads[p] = r.done ? undefined : r.value;
      }
    } finally {
      for (const it of iters) it.return?.();
    }
    return picked;
  }

  /**
   * Record per-recipient results of one delivery attempt: each outcome's pending recipient
   * gets attempts+1 (not a deferral marked tried: false) and the reply; 'delivered'/'failed' are final. The message gets
   * attempts+1. If no recipient is pending any more the record and body are deleted and the
   * final record is returned (for DSNs); else it is 'ready' again (still 'held' if held) with
   * nextAttemptAt = the earliest retryAt of this call's deferrals, or now if there is none.
   * With `owner`, a message leased by someone else is refused (PST_ERR_QUEUE_LEASE_LOST: the
   * caller's lease is gone); a message whose lease expired and was not re-leased is accepted.
   */
  settle(id: string, outcomes: RecipientOutcome[], owner?: string): Promise<MessageRecord | null> {
    return this.write('settle', () => {
      const rec = this.load(id);
      if (owner !== undefined && rec.state === 'leased' && rec.lease?.owner !== owner) {
        throw new PosternError('PST_ERR_QUEUE_LEASE_LOST', `message ${id} is leased by ${rec.lease?.owner ?? '?'}, not ${owner}`);
      }
      for (const o of outcomes) {
        if (!rec.recipients.some((r) => r.address === o.address)) {
          throw new PosternError('PST_ERR_QUEUE_NOT_FOUND', `message ${id} has no recipient ${o.address}`);
        }
      }
      const nowMs = Math.floor(this.clock());
      const delta = new CounterDelta();
      delta.add(rec, -1);
      this.unindex(rec);
      let retryAt = Infinity;
      for (const o of outcomes) {
        for (const r of rec.recipients) {
          if (r.address !== o.address || r.state !== 'pending') continue;
          if (o.outcome !== 'deferred' || o.tried !== false) r.attempts++;
          if (o.reply !== undefined) r.lastReply = makeReply(o.reply, nowMs);
          if (o.outcome === 'delivered') r.state = 'delivered';
          else if (o.outcome === 'failed') r.state = 'failed';
          else if (o.retryAt < retryAt) retryAt = o.retryAt;
        }
      }
      rec.attempts++;
      rec.lease = undefined;
      if (isFinal(rec)) {
        void this.messages.remove(id);
        void this.bodies.remove(id);
      } else {
        if (rec.state === 'leased') rec.state = 'ready';
        rec.nextAttemptAt = Number.isFinite(retryAt) ? Math.max(0, Math.ceil(retryAt)) : nowMs;
        this.store(rec);
        delta.add(rec, 1);
      }
      delta.applyTo(this.counters);
      return rec;
    });
  }

  complete(id: string, addresses: string[], reply?: ReplyRecord): Promise<MessageRecord | null> {
    return this.settle(id, addresses.map((address) => ({ address, outcome: 'delivered' as const, reply })));
  }

  defer(id: string, addresses: string[], retryAt: number, reply?: ReplyRecord): Promise<MessageRecord | null> {
    return this.settle(id, addresses.map((address) => ({ address, outcome: 'deferred' as const, retryAt, reply })));
  }

  fail(id: string, addresses: string[], reply?: ReplyRecord): Promise<MessageRecord | null> {
    return this.settle(id, addresses.map((address) => ({ address, outcome: 'failed' as const, reply })));
  }

  /** Take a message out of circulation (a lease on it is dropped); never leased until released. */
  async hold(id: string): Promise<void> {
    await this.write('hold', () => {
      this.holdIn(this.load(id));
    });
  }

  /** Make a held (or scheduled) message due now; a leased message is left alone. */
  async release(id: string): Promise<void> {
    await this.write('release', () => {
      this.makeDueIn(this.load(id), Math.floor(this.clock()));
    });
  }

  /** Delete a message and its body whatever its state. */
  async remove(id: string): Promise<void> {
    await this.write('remove', () => {
      const rec = this.load(id);
      const delta = new CounterDelta();
      delta.add(rec, -1);
      this.unindex(rec);
      void this.messages.remove(id);
      void this.bodies.remove(id);
      delta.applyTo(this.counters);
    });
  }

  // ---------------------------------------------------------------- administration
  // (HTTP admin API: queue-actions-v1.ts.) New methods only; the transitions mirror hold/release.

  /**
   * Retry now: a ready message scheduled in the future becomes due now ('due', also when it
   * already was). A leased or held message is left alone and its state returned.
   */
  retryNow(id: string): Promise<'due' | 'leased' | 'held'> {
    return this.write('retry', () => {
      const rec = this.load(id);
      if (rec.state !== 'ready') return rec.state;
      this.makeDueIn(rec, Math.floor(this.clock()));
      return 'due' as const;
    });
  }

  /**
   * Fail every pending recipient with `reply` (an administrator's bounce) and delete the
   * message and its body, as settle() does when the last recipient becomes final; recipient
   * attempts are not counted (nothing was tried). A leased message (a delivery in flight) is
   * left alone: { leased: true }. Otherwise the final record and the recipients failed now
   * (for the DSN, which the caller queues BEFORE this call, as the scheduler does).
   */
  failAll(id: string, reply: ReplyRecord): Promise<{ leased: true } | { leased: false; record: MessageRecord; failed: Recipient[] }> {
    return this.write('bounce', () => {
      const rec = this.load(id);
      if (rec.state === 'leased') return { leased: true as const };
      const nowMs = Math.floor(this.clock());
      const delta = new CounterDelta();
      delta.add(rec, -1);
      this.unindex(rec);
      const failed: Recipient[] = [];
      for (const r of rec.recipients) {
        if (r.state !== 'pending') continue;
        r.state = 'failed';
        r.lastReply = makeReply(reply, nowMs);
        failed.push(r);
      }
      rec.lease = undefined;
      void this.messages.remove(id);
      void this.bodies.remove(id);
      delta.applyTo(this.counters);
      return { leased: false as const, record: rec, failed };
    });
  }

  /**
   * Fail the pending recipients of one domain in one message (an administrator's bounce or
   * delete of a destination). A leased message is left alone ({ leased: true }). When no
   * recipient is pending afterwards the message and its body are deleted (removed: true).
   */
  failDomainRecipients(id: string, domain: string, reply: ReplyRecord): Promise<{ leased: true } | { leased: false; record: MessageRecord; failed: Recipient[]; removed: boolean }> {
    const d = domain.toLowerCase();
    return this.write('domain-fail', () => {
      const rec = this.load(id);
      if (rec.state === 'leased') return { leased: true as const };
      const nowMs = Math.floor(this.clock());
      const delta = new CounterDelta();
      delta.add(rec, -1);
      this.unindex(rec);
      const failed: Recipient[] = [];
      for (const r of rec.recipients) {
        if (r.state !== 'pending' || r.domain !== d) continue;
        r.state = 'failed';
        r.lastReply = makeReply(reply, nowMs);
        failed.push(r);
      }
      const removed = !rec.recipients.some((r) => r.state === 'pending');
      if (removed) {
        void this.messages.remove(id);
        void this.bodies.remove(id);
      } else {
        this.store(rec);
        delta.add(rec, 1);
      }
      delta.applyTo(this.counters);
      return { leased: false as const, record: rec, failed, removed };
    });
  }

  /** Ids of messages with a pending recipient in `domain`, in id order, at most `limit`. */
  idsForDomain(domain: string, limit: number): string[] {
    this.checkRead();
    const d = domain.toLowerCase();
    const out: string[] = [];
    for (const { key, value } of this.messages.getRange({})) {
      if (decodeRecord(value).recipients.some((r) => r.state === 'pending' && r.domain === d)) out.push(key);
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
    const pendingIn = (rec: MessageRecord): boolean => rec.recipients.some((r) => r.state === 'pending' && r.domain === d);
    let after: string | undefined;
    let changed = 0;
    for (;;) {
      this.checkRead();
      const ids: string[] = [];
      let last: string | undefined;
      let scanned = 0;
      for (const { key, value } of this.messages.getRange(after === undefined ? {} : { start: after })) {
        if (key === after) continue;
        last = key;
        scanned++;
        if (pendingIn(decodeRecord(value))) ids.push(key);
        if (ids.length >= batch || scanned >= batch * 20) break;
      }
      if (last === undefined) break;
      after = last;
      if (ids.length === 0) continue;
      changed += await this.write(`domain-${action}`, () => {
        const nowMs = Math.floor(this.clock());
        let n = 0;
        for (const id of ids) {
          const rec = this.read(id);
          if (rec === undefined || !pendingIn(rec)) continue;
          if (action === 'hold' ? this.holdIn(rec) : action === 'release' ? this.makeDueIn(rec, nowMs) : rec.state === 'ready' && this.makeDueIn(rec, nowMs)) n++;
        }
        return n;
      });
    }
    return changed;
  }

  /** Inside a write transaction: held or scheduled -> due now. False if nothing changed. */
  private makeDueIn(rec: MessageRecord, nowMs: number): boolean {
    if (rec.state === 'leased' || (rec.state === 'ready' && rec.nextAttemptAt <= nowMs)) return false;
    this.restate(rec, () => {
      rec.state = 'ready';
      rec.nextAttemptAt = nowMs;
    });
    return true;
  }

  /** Inside a write transaction: change a stored record's state, keeping indexes and counters right. */
  private restate(rec: MessageRecord, change: () => void): void {
    const delta = new CounterDelta();
    delta.add(rec, -1);
    this.unindex(rec);
    change();
    this.store(rec);
    delta.add(rec, 1);
    delta.applyTo(this.counters);
  }

  /** Inside a write transaction: -> held (a lease is dropped). False if it already was. */
  private holdIn(rec: MessageRecord): boolean {
    if (rec.state === 'held') return false;
    this.restate(rec, () => {
      rec.state = 'held';
      rec.lease = undefined;
    });
    return true;
  }

  /** Return every lease with expiresAt <= now to 'ready' (a range read of the lease index). */
  reclaimExpired(): Promise<number> {
    return this.write('reclaim', () => this.reclaimIn(Math.floor(this.clock())));
  }

  /**
   * Return every leased message to ready, whoever holds it. For a node starting up as the
   * only deliverer of this folder: its previous incarnation's leases are all dead, and
   * waiting for them to expire would delay that mail by up to a lease time.
   */
  releaseAllLeases(): Promise<number> {
    return this.write('reclaim', () => this.reclaimIn(MAX_TIME_MS));
  }

  /** Inside a write transaction: reclaim expired leases, returns how many. */
  private reclaimIn(nowMs: number): number {
    // Collected first: the loop below deletes keys of the range it read.
    const expired = Array.from(this.leases.getRange(expiredLeaseRange(nowMs))) as { key: LeaseKey; value: string }[];
    const delta = new CounterDelta();
    let n = 0;
    for (const e of expired) {
      void this.leases.remove(e.key);
      const rec = this.read(e.value);
      if (rec === undefined || rec.state !== 'leased') {
        this.log.warn({ id: e.value, key: e.key, state: rec?.state }, 'stale lease key dropped');
        continue;
      }
      delta.add(rec, -1);
      rec.state = 'ready';
      rec.lease = undefined;
      // nextAttemptAt is kept: it is in the past, so the message is due at once and keeps
      // its place ahead of messages that became due later.
      this.store(rec);
      delta.add(rec, 1);
      n++;
    }
    delta.applyTo(this.counters);
    if (n > 0) this.log.debug({ reclaimed: n }, 'expired leases reclaimed');
    return n;
  }

  /** Inside a write transaction: the record, or PST_ERR_QUEUE_NOT_FOUND. */
  private load(id: string): MessageRecord {
    const rec = this.read(id);
    if (rec === undefined) throw notFound(id);
    return rec;
  }

  private read(id: string): MessageRecord | undefined {
    const raw = this.messages.getBinaryFast(id);
    return raw === undefined ? undefined : decodeRecord(raw);
  }

  /** Remove the index key that the record's current state implies. */
  private unindex(rec: MessageRecord): void {
    if (rec.state === 'ready') void this.due.remove(dueKey(rec.priority, rec.nextAttemptAt, rec.seq));
    else if (rec.state === 'leased' && rec.lease !== undefined) void this.leases.remove(leaseKey(rec.lease.expiresAt, rec.seq));
  }

  /** Write the record and the index key its state implies. */
  private store(rec: MessageRecord): void {
    void this.messages.put(rec.id, encodeRecord(rec));
    if (rec.state === 'ready') void this.due.put(dueKey(rec.priority, rec.nextAttemptAt, rec.seq), rec.id);
    else if (rec.state === 'leased' && rec.lease !== undefined) void this.leases.put(leaseKey(rec.lease.expiresAt, rec.seq), rec.id);
  }

  /**
   * Run `fn` as an lmdb-js asynchronous transaction: it executes on this thread inside the
   * next batched write transaction (together with whatever else was queued in this event
   * turn) and the promise resolves after that transaction committed. lmdb-js commits the
   * transaction even when a callback throws, so every `fn` here validates before it writes.
   */
  private async write<T>(op: string, fn: () => T): Promise<T> {
    if (this.closed) throw closedError();
    this.inflight++;
    try {
      return await this.env.transaction(fn);
    } catch (err) {
      throw await this.writeError(err, op);
    } finally {
      this.settled();
    }
  }

  private async writeError(err: unknown, op: string): Promise<PosternError> {
    if (err instanceof PosternError) return err;
    let cause: unknown = err;
    const commitError = (err as { commitError?: PromiseLike<unknown> } | null)?.commitError;
    if (commitError !== undefined && typeof commitError.then === 'function') {
      // lmdb-js rejects each write with a generic "Commit failed" and the real error
      // (ENOSPC, EIO, MDB_MAP_FULL...) on this shared promise, rejected a moment later.
      const real = await waitAtMost(commitError, CAUSE_WAIT_MS);
      if (real !== undefined) cause = real;
      if (!this.failures.has(commitError as object)) {
        this.failures.add(commitError as object);
        this.st.failedCommits++;
        this.log.error({ err: cause, op }, 'queue write transaction failed');
      }
    } else {
      this.log.error({ err, op }, 'queue write failed');
    }
    const message = cause instanceof Error ? cause.message : String(cause);
    return new PosternError('PST_ERR_QUEUE_WRITE', `queue ${op} failed: ${message}`, { cause });
  }

  private settled(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idle !== null) {
      const wake = this.idle;
      this.idle = null;
      wake();
    }
  }

  // ---------------------------------------------------------------- reads

  private checkRead(): void {
    if (this.closed) throw closedError();
    if (this.viewDepth > 0) {
      throw new Error('queue read inside withBody(): it would overwrite the body view being read');
    }
  }

  /** The committed record, or undefined. A fresh object: the caller may keep or change it. */
  get(id: string): MessageRecord | undefined {
    this.checkRead();
    return this.read(id);
  }

  /**
   * Zero-copy body read: `fn` gets lmdb-js's reusable buffer (getBinaryFast). The view is
   * valid ONLY during the synchronous run of `fn`: do not keep it, do not use it after an
   * await, and do not call other Queue reads inside `fn` (they would overwrite it; this
   * throws if you try). Copy with Buffer.from(body) if you need it longer.
   */
  withBody<T>(id: string, fn: (body: Buffer) => T): T {
    this.checkRead();
    const raw = this.bodies.getBinaryFast(id);
    if (raw === undefined) throw notFound(id);
    // getBinaryFast's Buffer has `length` set to the value's size but a larger byteLength
    // (the whole reusable area), which native Buffer code (equals, socket writes) uses; for
    // values it maps directly it is a plain Uint8Array. Either way, a Buffer view with the
    // exact bounds over the same memory: nothing is copied.
    const body = Buffer.from(raw.buffer, raw.byteOffset, raw.length);
    this.viewDepth++;
    try {
      return fn(body);
    } finally {
      this.viewDepth--;
    }
  }

  /**
   * Counters as of the last commit. total/byPriority/leased/held/byDomain are stored
   * counters (O(1), O(domains)); scheduled is counted in the due index past `now`, so this
   * costs O(messages scheduled in the future) cursor steps; ready = ready - scheduled.
   */
  counts(): QueueCounts {
    this.checkRead();
    const c = readCounters(this.counters);
    const nowMs = Math.floor(this.clock());
    let scheduled = 0;
    for (const p of PRIORITIES) scheduled += this.due.getCount(scheduledRange(p, nowMs));
    return {
      total: c.total,
      byPriority: c.byPriority,
      byState: { ready: c.readyAll - scheduled, scheduled, leased: c.byState.leased, held: c.byState.held },
      byDomain: c.byDomain,
    };
  }

  /** Up to `limit` records in id order (arrival order). For tools and tests; O(limit). */
  /** Messages in id (arrival) order; `after` is an exclusive cursor: the last id of the previous page. */
  list(limit = Infinity, after?: string): MessageRecord[] {
    this.checkRead();
    const out: MessageRecord[] = [];
    const range: { limit?: number; start?: string } = Number.isFinite(limit) ? { limit: limit + (after ? 1 : 0) } : {};
    if (after) range.start = after;
    for (const { key, value } of this.messages.getRange(range)) {
      if (after && key === after) continue;
      if (out.length >= limit) break;
      out.push(decodeRecord(value));
    }
    return out;
  }

  stats(): QueueStats {
    return { ...this.st };
  }

  /** Refuse new operations, wait for the ones in flight, then close the environment. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      while (this.inflight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
      await this.env.close();
      this.log.info({ seq: this.seq, ...this.st }, 'queue closed');
    })();
    return this.closing;
  }
}
