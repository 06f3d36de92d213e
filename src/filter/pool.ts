// The filter pool (Piscina side): POSTERN_WORKERS threads running worker.ts over each
// message before its 250. Bodies cross as transferred ArrayBuffers (no structured clone) and
// come back composed (trace header + filter headers + message), a batch's messages end to end
// in one transferred ArrayBuffer.
//
// Messages travel in batches, the way the queue commits in groups: while fewer than
// BATCHES_PER_WORKER batches per worker are out, a message leaves at once (a batch of one, no
// added latency); once they are all out, new messages wait and leave together, up to
// POSTERN_FILTER_BATCH at a time, when a batch comes back. Under load one Piscina task (one
// postMessage each way, one wake-up, one timer) then carries many messages, so the fixed cost
// of a hand-off is shared by all of them.
//
// A full pool (needsDrain) is answered 451 4.3.2 by the session. A filter that throws is that
// message's tempfail (the worker catches it). A batch whose worker dies, or that is still out
// POSTERN_FILTER_TIMEOUT_MS after its oldest message was submitted, is a tempfail for each of
// its messages: never a silent accept, and nothing accepted is lost (the clients retry a 451).
import { Piscina } from 'piscina';
import { fileURLToPath } from 'node:url';
import { ACTIONS, packEnvelope, type FilterBatch, type FilterBatchResult, type FilterEnvelope, type Verdict } from './messages.js';

export interface FilterPoolOptions {
  workers: number;
  modules: readonly string[];
  /** The built-in spam filter's settings, when a model is configured. */
  spam?: { model: string; tagScore: number | null; rejectScore: number | null; quarantineScore?: number | null };
  /**
   * Other built-in filters: module paths (run before the user's modules) and settings passed
   * to every worker as workerData.builtin.<name>.
   */
  builtins?: Array<{ name: string; module: string; settings: unknown }>;
  timeoutMs: number;
  maxQueue: number;
  /** At most this many messages per batch (1 = one Piscina task per message). */
  maxBatch?: number;
  /** A worker failed outside any task (its messages, if any, were already tempfailed). */
  onError?: (err: unknown) => void;
}

export interface FilterOutcome {
  /** The folded verdict: action, score and reason (its headers are in `body`, not repeated here). */
  verdict: Verdict;
  /** The composed message: a view into its batch's buffer (empty when refused or failed). */
  body: Buffer;
  filterMs: number;
  /** Wall time of the whole hand-off (queueing, transfers, filters). */
  totalMs: number;
  /** Messages in the batch this one travelled in. */
  batch: number;
}

interface Waiting {
  id: string;
  prefix: string;
  /** packEnvelope(envelope), made at once: the caller may reuse its envelope object. */
  envelope: string;
  /** The body, transferred to the worker with its batch. */
  body: ArrayBuffer;
  started: number;
  resolve: (o: FilterOutcome) => void;
}

/** Batches out per worker: one running, one waiting, so a worker never idles on this thread. */
const BATCHES_PER_WORKER = 2;
export const DEFAULT_MAX_BATCH = 64;
/** Slots of the running table, reused round-robin; far more than batches can be out at once. */
const RUNNING_SLOTS = 4096;

export class FilterPool {
  readonly #pool: Piscina;
  readonly #timeoutMs: number;
  readonly #maxBatch: number;
  readonly #maxBatches: number;
  /** Messages in the workers or waiting for one; past workers + maxQueue the pool is full. */
  #inFlight = 0;
  readonly #capacity: number;
  #waiting: Waiting[] = [];
  #batchesOut = 0;
  readonly #workers: number;
  /** ∫ min(batches out, workers) dt in ms since start: worker-time with work (see load). */
  #busyWorkerMs = 0;
  #busySince = performance.now();
  /** Per batch out (by slot), when its oldest message was handed in: at most 2 × workers entries. */
  readonly #outSince = new Map<number, number>();
  #batches = 0;
  #batched = 0;
  #busyMs = 0;
  /** Per batch slot, the threadId of the worker running it (0: not started): whom a timeout ends. */
  readonly #running = new Int32Array(new SharedArrayBuffer(4 * RUNNING_SLOTS));
  #nextSlot = 0;
  /** Workers being ended after a timeout: no batch leaves until Piscina has replaced them. */
  #ending = 0;

  constructor(o: FilterPoolOptions) {
    this.#timeoutMs = o.timeoutMs;
    this.#capacity = o.workers + o.maxQueue;
    this.#maxBatch = Math.max(1, o.maxBatch ?? DEFAULT_MAX_BATCH);
    this.#maxBatches = BATCHES_PER_WORKER * o.workers;
    this.#workers = o.workers;
    this.#pool = new Piscina({
      filename: new URL('./worker.js', import.meta.url).href,
      minThreads: o.workers,
      maxThreads: o.workers,
      // Both batches of a worker are posted to it at once, so the next one is already in its
      // port when it answers the first: it never idles waiting for this thread to react.
      concurrentTasksPerWorker: BATCHES_PER_WORKER,
      maxQueue: this.#maxBatches + 1, // we never have more batches out than this
      workerData: {
        modules: [...(o.builtins ?? []).map((b) => b.module), ...(o.spam ? [fileURLToPath(new URL('./spam/filter.js', import.meta.url))] : []), ...o.modules],
        spam: o.spam,
        builtin: Object.fromEntries((o.builtins ?? []).map((b) => [b.name, b.settings])),
        running: this.#running,
      },
      idleTimeout: 60_000,
    });
    // A worker that fails while it holds no task (say, a filter's stray timer throws) is
    // reported by Piscina as an 'error' event; without a listener that would end the node.
    this.#pool.on('error', (err: unknown) => o.onError?.(err));
  }

  /**
   * True while the pool is full: workers + maxQueue messages in the workers or waiting for
   * one. (Piscina's own needsDrain turns true as soon as every worker is busy, which would
   * refuse mail whenever the filters are merely working; we allow a queue behind them.)
   */
  get needsDrain(): boolean {
    return this.#inFlight >= this.#capacity;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get utilization(): number {
    return this.#pool.utilization;
  }

  /**
   * For the saturation alerts (docs/alerts.md): the worker-time with work since start (each
   * worker with a batch posted to it counts as busy, whether or not the batch has come back
   * yet, so a filter that runs for minutes is seen at once; Piscina's own utilization counts
   * only finished tasks), and how long the oldest message still in the pool (waiting for a
   * worker, or in a batch posted to one, which may sit behind the batch it runs) has waited
   * for its verdict. Messages leave in batches, so the ones waiting alone empty each time a
   * batch comes back: they would say nothing of a backlog.
   */
  get load(): { workers: number; busyWorkerMs: number; oldestWaitMs: number } {
    const now = performance.now();
    let oldest = this.#waiting[0]?.started ?? now;
    for (const t of this.#outSince.values()) oldest = Math.min(oldest, t);
    return { workers: this.#workers, busyWorkerMs: this.#busyWorkerMs + Math.min(this.#batchesOut, this.#workers) * (now - this.#busySince), oldestWaitMs: now - oldest };
  }

  /** Add the worker-time since the last change of #batchesOut (called just before each change). */
  #accountBusy(): void {
    const now = performance.now();
    this.#busyWorkerMs += Math.min(this.#batchesOut, this.#workers) * (now - this.#busySince);
    this.#busySince = now;
  }

  /**
   * Batches sent and the messages they carried, since start (mean batch = messages / batches),
   * and the workers' time on the batches that came back (filters + composing).
   */
  get batchStats(): { batches: number; messages: number; busyMs: number } {
    return { batches: this.#batches, messages: this.#batched, busyMs: this.#busyMs };
  }

  /**
   * Filter one message. `body` is transferred (the caller loses it) when it owns its whole
   * ArrayBuffer (DataScanner.takeBody allocates it so), else copied once first.
   */
  filter(id: string, envelope: FilterEnvelope, prefix: string, body: Buffer): Promise<FilterOutcome> {
    const started = performance.now();
    this.#inFlight++;
    const owned = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.buffer instanceof ArrayBuffer;
    const ab = owned ? (body.buffer as ArrayBuffer) : (new Uint8Array(body).buffer as ArrayBuffer);
    return new Promise((resolve) => {
      this.#waiting.push({ id, prefix, envelope: packEnvelope(envelope), body: ab, started, resolve });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#waiting.length > 0 && this.#batchesOut < this.#maxBatches && this.#ending === 0) {
      const batch = this.#waiting.length <= this.#maxBatch ? this.#waiting : this.#waiting.slice(0, this.#maxBatch);
      this.#waiting = batch === this.#waiting ? [] : this.#waiting.slice(this.#maxBatch);
      this.#send(batch);
    }
  }

  #send(batch: Waiting[]): void {
    this.#accountBusy();
    this.#batchesOut++;
    this.#batches++;
    this.#batched += batch.length;
    const slot = this.#nextSlot;
    this.#nextSlot = (slot + 1) % RUNNING_SLOTS;
    Atomics.store(this.#running, slot, 0);
    this.#outSince.set(slot, batch[0]!.started);
    const meta: string[] = new Array(3 * batch.length);
    const bodies: ArrayBuffer[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const w = batch[i]!;
      meta[3 * i] = w.id;
      meta[3 * i + 1] = w.prefix;
      meta[3 * i + 2] = w.envelope;
      bodies[i] = w.body;
    }
    let answered = false;
    const answer = (each: (w: Waiting, i: number) => FilterOutcome): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      this.#outSince.delete(slot);
      this.#inFlight -= batch.length;
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(each(batch[i]!, i));
    };
    const tempfail = (reason: string): void => {
      const now = performance.now();
      answer((w) => ({ verdict: { action: 'tempfail', reason }, body: Buffer.alloc(0), filterMs: 0, totalMs: now - w.started, batch: batch.length }));
    };
    // One timer per batch, due when its oldest message has waited timeoutMs in all. The
    // messages are answered then; a worker still running the batch is ended (Piscina starts
    // another), which also ends the other batch it held.
    const timer = setTimeout(() => {
      tempfail(`filter timeout after ${this.#timeoutMs} ms`);
      const threadId = Atomics.load(this.#running, slot);
      const worker = threadId === 0 ? undefined : this.#pool.threads.find((t) => t.threadId === threadId);
      if (worker) {
        // Hold new batches until Piscina has seen the exit and replaced the worker, so none
        // is handed to the dying one. (Piscina's listener was added first, so it has run.)
        this.#ending++;
        worker.once('exit', () => {
          this.#ending--;
          this.#pump();
        });
        void worker.terminate();
      }
    }, Math.max(0, batch[0]!.started + this.#timeoutMs - performance.now()));
    // No AbortSignal: Piscina never gives a worker a second task while it runs an abortable one,
    // and the second task waiting in the worker's port is what keeps it from idling.
    this.#pool.run({ meta, bodies, slot } satisfies FilterBatch, { transferList: bodies }).then(
      (r: FilterBatchResult) => {
        this.#busyMs += r.busyMs;
        const now = performance.now();
        answer((w, i) => {
          const verdict: Verdict = { action: ACTIONS[r.actions[i]!]! };
          const score = r.nums[4 * i]!;
          if (!Number.isNaN(score)) verdict.score = score;
          const reason = r.reasons[i];
          if (reason !== undefined) verdict.reason = reason;
          const body = Buffer.from(r.bodies, r.nums[4 * i + 2]!, r.nums[4 * i + 3]!);
          return { verdict, body, filterMs: r.nums[4 * i + 1]!, totalMs: now - w.started, batch: batch.length };
        });
      },
      (err: unknown) => tempfail(`filter failed: ${(err as Error)?.message ?? String(err)}`),
    ).finally(() => {
      this.#accountBusy();
      this.#batchesOut--;
      this.#pump();
    });
  }

  /** Stops the workers; messages still waiting for one are answered tempfail (their clients retry). */
  async close(): Promise<void> {
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#inFlight -= waiting.length;
    const now = performance.now();
    for (const w of waiting) w.resolve({ verdict: { action: 'tempfail', reason: 'filter pool shutting down' }, body: Buffer.alloc(0), filterMs: 0, totalMs: now - w.started, batch: 0 });
    await this.#pool.destroy();
  }
}
