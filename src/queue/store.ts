// The durable priority queue (class Queue), the core of the queue: open and recovery, enqueue
// with group commit, settle (the delivery engine's outcomes), reads, the write path that
// maps LMDB failures to PST_ERR_QUEUE_WRITE, and close. Leasing (lease-manager.ts) and
// administration (queue-admin.ts) are parts it composes and exposes through the same object.
// A corrupt record met anywhere is set aside by a repair (check-queue.ts) in a transaction of
// its own or at the end of the one that met it. Sub-databases: record-store.ts; docs/queue.md.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import type { RootDatabase } from 'lmdb';
import { PosternError } from '../errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import { CounterDelta } from './counters.js';
import { makeId, seqOfId } from './ids.js';
import { checkQueue, type QueueProblem } from './check-queue.js';
import { COUNTER, LAYOUT_VERSION, META, dueKey } from './keys.js';
import { LeaseManager } from './lease-manager.js';
import { DestinationWaits } from './destination-waits.js';
import { QueueAdmin } from './queue-admin.js';
import { RecordStore, notFound, openQueueEnv } from './record-store.js';
import { encodeRecord, historyDepth, isFinal, makeMessage, makeReply, pushAttempt } from './records.js';
import { SuppressionList } from './suppressions.js';
import { EventLog } from './events.js';
import { WarmupCounts } from './warmup-counts.js';
import {
  type EnvelopeInput,
  type FailRecipientsResult,
  type MessageRecord,
  type Priority,
  type QueueCounts,
  type QueueOptions,
  type QueueStats,
  type RecipientOutcome,
  type ReplyRecord,
} from './types.js';
import { invalidArgument } from '../lib/invalid-argument.js';

export * from './types.js';
export { isFinal } from './records.js';
export type { QueueProblem, QueueProblemKind } from './check-queue.js';
export { FAIRNESS_CYCLE, STARVATION_BOUND } from './fairness.js';

/** Problems of one repair logged one by one; the rest as a count. */
const MAX_LOGGED_PROBLEMS = 100;
const DEFAULT_LEASE_MS = 300_000;
/** Records backlog() looks at, oldest first, for the oldest one not held. */
export const BACKLOG_SCAN = 64;
/** How long a failed write waits for lmdb-js to report the underlying error. */
const CAUSE_WAIT_MS = 1000;

/** A repair's findings in the log; a record set aside is an error with its own code. */
function logProblems(log: Logger, problems: QueueProblem[]): void {
  for (const p of problems.slice(0, MAX_LOGGED_PROBLEMS)) {
    if (p.kind === 'undecodable-record' || p.kind === 'record-without-body' || p.kind === 'body-without-record') {
      log.error({ code: 'PST_ERR_QUEUE_CORRUPT_RECORD', id: p.id, kind: p.kind, reason: p.detail }, 'corrupt queue record set aside');
    } else {
      log.warn({ kind: p.kind, id: p.id, detail: p.detail }, 'queue index or counter repaired');
    }
  }
  if (problems.length > MAX_LOGGED_PROBLEMS) log.warn({ more: problems.length - MAX_LOGGED_PROBLEMS }, 'more queue problems repaired');
}

/**
 * The enqueues of one lmdb-js event-turn batch. Their counter changes and the highest seq are
 * written by one transaction callback queued when the batch closes (the 'beforecommit' of its
 * turn), so after every put of the batch in lmdb-js's instruction order.
 */
interface EnqueueBatch {
  /** The records as enqueued; `counted` once a repair's recount included it. */
  readonly entries: { readonly id: string; readonly rec: MessageRecord; counted: boolean }[];
  maxSeq: number;
}

const noop = (): void => {};

function closedError(): PosternError {
  return new PosternError('PST_ERR_QUEUE_CLOSED');
}

function toBody(body: Buffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(body)) return body;
  if (!Array.isArray(body)) throw invalidArgument('enqueue: body must be a Buffer or an array of Buffers', 'type');
  if (body.length === 1 && Buffer.isBuffer(body[0])) return body[0];
  return Buffer.concat(body); // the one copy of a chunked body
}

function checkEnvelope(env: EnvelopeInput): Priority {
  if (env === null || typeof env !== 'object') throw invalidArgument('enqueue: envelope required', 'type');
  if (typeof env.sender !== 'string') throw invalidArgument('enqueue: sender must be a string', 'type');
  if (!Array.isArray(env.recipients) || env.recipients.length === 0) {
    throw invalidArgument('enqueue: at least one recipient', 'type');
  }
  for (const r of env.recipients) {
    if (r === null || typeof r !== 'object' || typeof r.address !== 'string') {
      throw invalidArgument('enqueue: every recipient needs an address', 'type');
    }
  }
  if (env.pool !== undefined && typeof env.pool !== 'string') throw invalidArgument('enqueue: pool must be a string', 'type');
  const p = env.priority ?? 1;
  if (p !== 0 && p !== 1 && p !== 2) throw invalidArgument(`enqueue: priority must be 0, 1 or 2, not ${String(p)}`);
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

export class Queue {
  /** The suppression list (suppressions.ts), in this environment's 'suppress' sub-database. */
  readonly suppressions: SuppressionList;
  /** The durable event log for event webhooks (events.ts), sub-database 'events'. */
  readonly events: EventLog;
  /** Warm-up counts per source × site and UTC day (warmup-counts.ts), sub-database 'warmup'. */
  readonly warmup: WarmupCounts;
  private readonly env: RootDatabase;
  private readonly store: RecordStore;
  private readonly leasing: LeaseManager;
  private readonly admin: QueueAdmin;
  private readonly waits: DestinationWaits;
  private readonly log: Logger;
  private readonly clock: () => number;
  private seq: number;
  /** No id past this one may be made here (fenceSeq: a successor makes the ids above). */
  private seqCeiling = Number.POSITIVE_INFINITY;
  private batch: EnqueueBatch | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  private inflight = 0;
  private idle: (() => void) | null = null;
  private viewDepth = 0;
  /** A write() callback is running (a corrupt record found now is repaired before it ends). */
  private inWrite = false;
  /** Enqueue batches whose counter callback has not run yet (see repairIn). */
  private readonly uncounted = new Set<EnqueueBatch>();
  private repairQueued = false;
  private readonly failures = new WeakSet<object>();
  private readonly st: QueueStats = { commits: 0, enqueueCommits: 0, messagesCommitted: 0, bytesCommitted: 0, failedCommits: 0 };

  private constructor(env: RootDatabase, opts: QueueOptions) {
    this.env = env;
    this.log = opts.logger ?? silentLogger();
    this.clock = opts.now ?? Date.now;
    this.store = new RecordStore(env);
    // A plain read (list, get, a domain scan) that met a corrupt record: repair in a
    // transaction of its own. Inside write() the repair ends that transaction instead.
    this.store.onUndecodable = () => {
      if (!this.inWrite) this.scheduleRepair();
    };
    this.seq = 0;
    const write = <T>(op: string, fn: () => T): Promise<T> => this.write(op, fn);
    const checkRead = (): void => this.checkRead();
    this.leasing = new LeaseManager(this.store, write, this.log, this.clock, opts.leaseMs ?? DEFAULT_LEASE_MS);
    this.admin = new QueueAdmin(this.store, write, this.clock, checkRead);
    this.waits = new DestinationWaits(this.store, write, this.log, this.clock);
    // The suppression list: its own sub-database, written through this.write().
    this.suppressions = new SuppressionList(
      env.openDB<string, string>({ name: 'suppress', encoding: 'string' }),
      write,
      () => this.clock(),
      checkRead,
    );
    this.events = new EventLog(env.openDB<string, number>({ name: 'events', encoding: 'string', keyEncoding: 'ordered-binary' }));
    this.warmup = new WarmupCounts(env.openDB<number, [number, string]>({ name: 'warmup', encoding: 'ordered-binary', keyEncoding: 'ordered-binary' }), write, this.log);
    // 'beforecommit' runs once per event-turn batch, at the end of the turn that queued it.
    env.on('beforecommit', () => {
      this.st.commits++;
      const batch = this.batch;
      this.batch = null; // the next enqueue belongs to the next batch
      if (batch !== null) {
        this.st.enqueueCommits++; // this transaction carries enqueues
        this.countBatch(batch);
      }
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
    const env = openQueueEnv(opts.path, opts.mapSizeBytes, false);
    let q: Queue;
    try {
      q = new Queue(env, opts);
      q.recover();
    } catch (err) {
      void env.close();
      throw err;
    }
    q.log.info(
      { path: opts.path, seq: q.seq, messages: q.store.counters.get(COUNTER.total) ?? 0, ms: Math.round(performance.now() - started) },
      'queue opened',
    );
    return q;
  }

  private recover(): void {
    const { meta } = this.store;
    const layout = meta.get(META.layout);
    if (layout === undefined) {
      meta.putSync(META.layout, LAYOUT_VERSION);
    } else if (layout !== LAYOUT_VERSION) {
      throw new PosternError('PST_ERR_QUEUE_CORRUPT', `queue layout ${String(layout)} is not ${LAYOUT_VERSION}`);
    }
    this.seq = meta.get(META.seq) ?? 0;
    const nowMs = Math.floor(this.clock());
    // Only open a write transaction when there is something to reclaim.
    if (this.leasing.anyExpired(nowMs)) {
      const n = this.env.transactionSync(() => {
        const reclaimed = this.leasing.reclaimIn(nowMs);
        if (this.store.undecodable.size > 0) this.repairIn();
        return reclaimed;
      });
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
      seq = this.nextSeq();
      id = makeId(receivedAt, seq);
    } else {
      const s = seqOfId(reservedId);
      if (s === undefined || s > this.seq) throw invalidArgument(`enqueue: ${reservedId} is not an id from reserveId()`);
      seq = s;
      id = reservedId;
    }
    const rec = makeMessage(env, id, seq, priority, receivedAt, nextAttemptAt, bytes.length);
    const packed = encodeRecord(rec);
    this.inflight++;
    let batch: EnqueueBatch | undefined;
    try {
      // Plain puts run entirely on lmdb-js's writer thread; all writes of this event turn
      // share one transaction, hence one fsync (group commit).
      const { bodies, messages, due } = this.store;
      const commit = bodies.put(id, bytes);
      void messages.put(id, packed);
      if (rec.state === 'ready') void due.put(dueKey(priority, nextAttemptAt, seq), id);
      batch = this.currentBatch();
      batch.entries.push({ id, rec, counted: false });
      if (seq > batch.maxSeq) batch.maxSeq = seq;
      await commit;
    } catch (err) {
      // A failed transaction runs none of its callbacks: the batch is never counted.
      if (batch !== undefined) this.uncounted.delete(batch);
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
    return makeId(Math.floor(this.clock()), this.nextSeq());
  }

  private nextSeq(): number {
    if (this.seq >= this.seqCeiling) {
      throw new PosternError('PST_ERR_QUEUE_SEQ_FENCED', `no more ids here: ${this.seqCeiling} ids were fenced off for a successor process`);
    }
    return ++this.seq;
  }

  /**
   * Hand the sequence above the next `gap` ids to another process that opens this folder while
   * this one still enqueues (a takeover: the old node drains while the new one accepts). The
   * sequence lives in memory between commits, so two processes counting from one stored value
   * would make the same ids; instead the stored value jumps by `gap` now (a synchronous
   * commit, before the successor opens), the successor counts from there, and this process
   * may make only the `gap` ids below it (past them, reserveId throws and SMTP answers 452).
   * Ids stay unique; the gap is left unused.
   */
  fenceSeq(gap: number): void {
    if (this.closed) throw closedError();
    const fence = this.seq + gap;
    this.env.transactionSync(() => {
      if ((this.store.meta.get(META.seq) ?? 0) < fence) void this.store.meta.put(META.seq, fence);
    });
    this.seqCeiling = fence;
  }

  /** The successor is gone (it failed to start): count on from what it may have used. */
  unfenceSeq(): void {
    const stored = this.store.meta.get(META.seq) ?? 0;
    if (stored > this.seq) this.seq = stored;
    this.seqCeiling = Number.POSITIVE_INFINITY;
  }

  /** The batch of the current event turn (closed and counted by the turn's 'beforecommit'). */
  private currentBatch(): EnqueueBatch {
    const b = this.batch;
    if (b !== null) return b;
    const batch: EnqueueBatch = { entries: [], maxSeq: 0 };
    this.uncounted.add(batch);
    this.batch = batch;
    return batch;
  }

  /**
   * Queue the transaction callback that writes a closed batch's counter changes and highest
   * seq. It must come after every put of the batch: lmdb-js runs a transaction callback when
   * its writer thread reaches it, which can be before the event turn that queued it has ended
   * (puts queued later in that turn are then not yet written), so a callback queued by the
   * first enqueue of a turn could run before the turn's last enqueues had joined its batch,
   * and their counts were lost. Queued from 'beforecommit' it is the batch's last instruction.
   */
  private countBatch(batch: EnqueueBatch): void {
    this.env
      .transaction(() => {
        const { counters, meta } = this.store;
        this.uncounted.delete(batch);
        const delta = new CounterDelta();
        for (const e of batch.entries) if (!e.counted) delta.add(e.rec, 1);
        delta.applyTo(counters);
        const stored = meta.get(META.seq) ?? 0;
        if (batch.maxSeq > stored) void meta.put(META.seq, batch.maxSeq);
      })
      .catch(noop); // a failed commit is reported through each enqueue's own promise
  }

  /**
   * Record per-recipient results of one delivery attempt: each outcome's pending recipient
   * gets attempts+1 (not a deferral marked tried: false), the reply, and the attempt appended to
   * its bounded history (records.ts pushAttempt); 'delivered'/'failed' are final. The message gets
   * attempts+1. If no recipient is pending any more the record and body are deleted and the
   * final record is returned (for DSNs); else it is 'ready' again (still 'held' if held) with
   * nextAttemptAt = the earliest retryAt of this call's deferrals, or now if there is none.
   * With `owner`, a message leased by someone else is refused (PST_ERR_QUEUE_LEASE_LOST: the
   * caller's lease is gone); a message whose lease expired and was not re-leased is accepted.
   * With `leasedAttempts` (the message's `attempts` when the caller leased it), a message that
   * has settled another attempt since is refused the same way: the lease was taken over and
   * that attempt's outcome stands, even when it came back to ready (or to this owner) since.
   */
  settle(id: string, outcomes: RecipientOutcome[], owner?: string, leasedAttempts?: number): Promise<MessageRecord | null> {
    return this.write('settle', () => {
      const rec = this.store.load(id);
      if (owner !== undefined && rec.state === 'leased' && rec.lease?.owner !== owner) {
        throw new PosternError('PST_ERR_QUEUE_LEASE_LOST', `message ${id} is leased by ${rec.lease?.owner ?? '?'}, not ${owner}`);
      }
      if (leasedAttempts !== undefined && rec.attempts !== leasedAttempts) {
        throw new PosternError('PST_ERR_QUEUE_LEASE_LOST', `message ${id} settled another attempt since this lease (attempts ${rec.attempts}, leased at ${leasedAttempts})`);
      }
      for (const o of outcomes) {
        if (!rec.recipients.some((r) => r.address === o.address)) {
          throw new PosternError('PST_ERR_QUEUE_NOT_FOUND', `message ${id} has no recipient ${o.address}`);
        }
      }
      const nowMs = Math.floor(this.clock());
      this.store.update(rec, () => {
        let retryAt = Infinity;
        let waitFor: string[] | undefined;
        const depth = historyDepth(rec.recipients.length);
        for (const o of outcomes) {
          for (const r of rec.recipients) {
            if (r.address !== o.address || r.state !== 'pending') continue;
            // A deferral without an attempt (an open circuit) is neither counted nor kept in
            // the history: hours of them would push the real attempts out.
            if (o.kind !== 'deferred' || o.tried !== false) {
              r.attempts++;
              pushAttempt(r, o.reply, nowMs, depth);
            }
            if (o.reply !== undefined) r.lastReply = makeReply(o.reply, nowMs);
            if (o.kind === 'delivered') r.state = 'delivered';
            else if (o.kind === 'failed') r.state = 'failed';
            else {
              if (o.retryAt < retryAt) retryAt = o.retryAt;
              if (typeof o.waitFor === 'string' && o.waitFor !== '' && !(waitFor ?? []).includes(o.waitFor)) (waitFor ??= []).push(o.waitFor);
            }
          }
        }
        rec.attempts++;
        rec.lease = undefined;
        // Tied to the destinations that deferred it (their outage): due when one of them is
        // released, or at retryAt, whichever comes first. Written only when there is a tie,
        // so a record of the old form keeps its form otherwise.
        if (waitFor !== undefined || rec.waitFor !== undefined) rec.waitFor = waitFor;
        if (isFinal(rec)) return false;
        if (rec.state === 'leased') rec.state = 'ready';
        rec.nextAttemptAt = Number.isFinite(retryAt) ? Math.max(0, Math.ceil(retryAt)) : nowMs;
        return true;
      });
      return rec;
    });
  }

  complete(id: string, addresses: string[], reply?: ReplyRecord): Promise<MessageRecord | null> {
    return this.settle(id, addresses.map((address) => ({ address, kind: 'delivered' as const, reply })));
  }

  defer(id: string, addresses: string[], retryAt: number, reply?: ReplyRecord): Promise<MessageRecord | null> {
    return this.settle(id, addresses.map((address) => ({ address, kind: 'deferred' as const, retryAt, reply })));
  }

  fail(id: string, addresses: string[], reply?: ReplyRecord): Promise<MessageRecord | null> {
    return this.settle(id, addresses.map((address) => ({ address, kind: 'failed' as const, reply })));
  }

  // ---------------------------------------------------------------- leasing (lease-manager.ts)

  /** Lease up to `limit` due messages (and `maxBytes` of them), fairly across priorities; see LeaseManager.lease. */
  lease(opts: { limit: number; owner: string; leaseMs?: number; maxBytes?: number; atLeastOne?: boolean; skip?: ReadonlySet<string> }): Promise<MessageRecord[]> {
    if (this.closed) return Promise.reject(closedError());
    return this.leasing.lease(opts);
  }

  /** Extend `owner`'s leases on these messages (deliveries in flight); see LeaseManager.renew. */
  renewLeases(ids: readonly string[], owner: string, leaseMs?: number): Promise<string[]> {
    if (this.closed) return Promise.reject(closedError());
    return this.leasing.renew(ids, owner, leaseMs);
  }

  /** Return every lease with expiresAt <= now to 'ready'. */
  reclaimExpired(): Promise<number> {
    return this.leasing.reclaimExpired();
  }

  /** Return every leased message to ready, whoever holds it (a node starting as the only deliverer). */
  releaseAllLeases(): Promise<number> {
    return this.leasing.releaseAll();
  }

  // ---------------------------------------------------------------- waiting for a destination (destination-waits.ts)

  /**
   * Make up to `limit` of the messages waiting for `destination` due now, oldest first (the
   * destination was seen working again); resolves with their ids. See DestinationWaits.
   */
  releaseWaiting(destination: string, limit: number): Promise<string[]> {
    if (this.closed) return Promise.reject(closedError());
    return this.waits.release(destination, limit);
  }

  /** Ready messages waiting for each destination key, from stored counters (O(destinations)). */
  waitingCounts(): Record<string, number> {
    this.checkRead();
    return this.waits.counts();
  }

  // ---------------------------------------------------------------- administration (queue-admin.ts)

  /** Take a message out of circulation (a lease on it is dropped); never leased until released. */
  hold(id: string): Promise<void> {
    return this.admin.hold(id);
  }

  /** Make a held (or scheduled) message due now; a leased message is left alone. */
  release(id: string): Promise<void> {
    return this.admin.release(id);
  }

  /** A scheduled ready message becomes due now; a leased or held one is left alone, its state returned. */
  retryNow(id: string): Promise<'due' | 'leased' | 'held'> {
    return this.admin.retryNow(id);
  }

  /** Delete a message and its body whatever its state. */
  remove(id: string): Promise<void> {
    return this.admin.remove(id);
  }

  /** Fail the pending recipients (all, or those in `domain`) of a message that is not leased; see QueueAdmin. */
  failRecipients(id: string, reply: ReplyRecord, domain?: string): Promise<FailRecipientsResult> {
    return this.admin.failRecipients(id, reply, domain);
  }

  /** Ids of messages with a pending recipient in `domain`, in id order, at most `limit`. */
  idsForDomain(domain: string, limit: number): string[] {
    return this.admin.idsForDomain(domain, limit);
  }

  /** hold / release / retry every message with a pending recipient in `domain`; see QueueAdmin. */
  applyToDomain(domain: string, action: 'hold' | 'release' | 'retry', batchSize?: number): Promise<number> {
    return this.admin.applyToDomain(domain, action, batchSize);
  }

  /** Messages in id (arrival) order; `after` is an exclusive cursor. For tools and tests; O(limit). */
  list(limit?: number, after?: string): MessageRecord[] {
    return this.admin.list(limit, after);
  }

  /**
   * Records in id (arrival) order after the exclusive cursor `after` (or from the first id >=
   * `start`), decoded one at a time as the caller iterates: a caller that stops early reads no
   * more. Iterate synchronously (no await inside the loop). A corrupt record is left out.
   */
  scan(after?: string, start?: string): Generator<MessageRecord> {
    this.checkRead();
    return this.store.records(after, start);
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
      return await this.env.transaction(() => this.inTransaction(fn));
    } catch (err) {
      throw await this.writeError(err, op);
    } finally {
      this.settled();
    }
  }

  /**
   * Run a write() callback. A corrupt record it met (read as absent, never half-way through
   * its writes) is set aside by a repair before the transaction ends, also when `fn` threw:
   * lmdb-js commits the transaction either way.
   */
  private inTransaction<T>(fn: () => T): T {
    this.inWrite = true;
    try {
      return fn();
    } finally {
      this.inWrite = false;
      if (this.store.undecodable.size > 0) this.repairIn();
    }
  }

  /**
   * Inside a write transaction: check and repair the whole queue (check-queue.ts): set the
   * corrupt records aside, rebuild indexes and counters from the records. O(queue), run only
   * when a corrupt record was met.
   */
  private repairIn(): void {
    this.store.undecodable.clear();
    const started = performance.now();
    const r = checkQueue(this.store, { repair: true, nowMs: Math.floor(this.clock()) });
    // Enqueues whose puts this transaction already holds but whose batch's counter callback
    // is still to run (it comes after every put of its batch): the recount included their
    // records, so their counts must not be added on top.
    for (const b of this.uncounted) for (const e of b.entries) if (!e.counted && this.store.messages.doesExist(e.id)) e.counted = true;
    if (r.maxSeq > this.seq) this.seq = r.maxSeq;
    logProblems(this.log, r.problems);
    this.log.warn({ problems: r.problems.length, records: r.records, ms: Math.round(performance.now() - started) }, 'queue repaired');
  }

  /** A repair in a transaction of its own, soon (a plain read found a corrupt record). */
  private scheduleRepair(): void {
    if (this.repairQueued || this.closed) return;
    this.repairQueued = true;
    setImmediate(() => {
      this.repairQueued = false;
      if (this.closed) return;
      this.write('repair', noop).catch((err: unknown) => this.log.error({ err }, 'queue repair failed'));
    });
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
    assert.equal(this.viewDepth, 0, 'queue read inside withBody(): it would overwrite the body view being read');
  }

  /** The committed record, or undefined. A fresh object: the caller may keep or change it. */
  get(id: string): MessageRecord | undefined {
    this.checkRead();
    return this.store.read(id);
  }

  /**
   * Zero-copy body read: `fn` gets lmdb-js's reusable buffer (getBinaryFast). The view is
   * valid ONLY during the synchronous run of `fn`: do not keep it, do not use it after an
   * await, and do not call other Queue reads inside `fn` (they would overwrite it; this
   * throws if you try). Copy with Buffer.from(body) if you need it longer.
   */
  withBody<T>(id: string, fn: (body: Buffer) => T): T {
    this.checkRead();
    const raw = this.store.bodies.getBinaryFast(id);
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

  /** Counters as of the last commit; see RecordStore.counts. */
  counts(): QueueCounts {
    this.checkRead();
    return this.store.counts(Math.floor(this.clock()));
  }

  /** Messages queued and not held, and the arrival of the oldest not held (within the first `scan` records); see RecordStore.backlog. */
  backlog(scan = BACKLOG_SCAN): { queued: number; oldestAt: number | null } {
    this.checkRead();
    return this.store.backlog(scan);
  }

  /** How many records (or bodies) were set aside as corrupt (sub-database 'corrupt'). */
  corruptCount(): number {
    this.checkRead();
    return this.store.corruptCount();
  }

  stats(): QueueStats {
    return { ...this.st };
  }

  /** Refuse new operations, wait for the ones in flight, then close the environment. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    const lastCounts = this.warmup.close(); // issued before the queue refuses writes
    this.closed = true;
    this.closing = (async () => {
      await lastCounts;
      while (this.inflight > 0) await new Promise<void>((resolve) => (this.idle = resolve));
      await this.env.close();
      this.log.info({ seq: this.seq, ...this.st }, 'queue closed');
    })();
    return this.closing;
  }
}
