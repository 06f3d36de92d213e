// The filter pool (Piscina side): POSTERN_WORKERS threads running worker.ts over each
// message before its 250. The body crosses as a transferred ArrayBuffer (no structured clone)
// and comes back composed (trace header + filter headers + message). A full pool (needsDrain)
// is answered 451 4.3.2 by the session; a filter that throws, crashes its worker or exceeds
// POSTERN_FILTER_TIMEOUT_MS becomes a tempfail, never a silent accept.
import { Piscina } from 'piscina';
import { fileURLToPath } from 'node:url';
import type { FilterEnvelope, FilterResult, Verdict } from './messages.js';

export interface FilterPoolOptions {
  workers: number;
  modules: string[];
  /** The built-in spam filter's settings, when a model is configured. */
  spam?: { model: string; tagScore: number | null; rejectScore: number | null; quarantineScore?: number | null };
  /**
   * Other built-in filters: module paths (run before the user's modules) and settings passed
   * to every worker as workerData.builtin.<name>.
   */
  builtins?: Array<{ name: string; module: string; settings: unknown }>;
  timeoutMs: number;
  maxQueue: number;
}

export interface FilterOutcome {
  verdict: Verdict;
  body: Buffer;
  filterMs: number;
  /** Wall time of the whole hand-off (queueing, transfers, filters). */
  totalMs: number;
}

export class FilterPool {
  readonly #pool: Piscina;
  readonly #timeoutMs: number;
  /** Messages in the workers or waiting for one; past workers + maxQueue the pool is full. */
  #inFlight = 0;
  readonly #capacity: number;

  constructor(o: FilterPoolOptions) {
    this.#timeoutMs = o.timeoutMs;
    this.#capacity = o.workers + o.maxQueue;
    this.#pool = new Piscina({
      filename: new URL('./worker.js', import.meta.url).href,
      minThreads: o.workers,
      maxThreads: o.workers,
      maxQueue: o.maxQueue + 1, // our own bound (needsDrain) is checked first
      workerData: {
        modules: [...(o.builtins ?? []).map((b) => b.module), ...(o.spam ? [fileURLToPath(new URL('./spam/filter.js', import.meta.url))] : []), ...o.modules],
        spam: o.spam,
        builtin: Object.fromEntries((o.builtins ?? []).map((b) => [b.name, b.settings])),
      },
      idleTimeout: 60_000,
    });
  }

  /**
   * True while the pool is full: every worker busy and maxQueue messages waiting. (Piscina's
   * own needsDrain turns true as soon as every worker is busy, which would refuse mail
   * whenever the filters are merely working; we allow a queue behind them.)
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
   * Filter one message. `body` is transferred (the caller loses it) when it owns its whole
   * ArrayBuffer (DataScanner.takeBody allocates it so), else copied once first.
   */
  async filter(id: string, envelope: FilterEnvelope, prefix: string, body: Buffer): Promise<FilterOutcome> {
    const started = performance.now();
    this.#inFlight++;
    const owned = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && body.buffer instanceof ArrayBuffer;
    const ab = owned ? (body.buffer as ArrayBuffer) : (new Uint8Array(body).buffer as ArrayBuffer);
    try {
      const r = (await this.#pool.run({ id, envelope, prefix, body: ab }, { transferList: [ab], signal: AbortSignal.timeout(this.#timeoutMs) })) as FilterResult;
      return { verdict: r.verdict, body: Buffer.from(r.body), filterMs: r.filterMs, totalMs: performance.now() - started };
    } catch (err) {
      const e = err as { name?: string; message?: string };
      const why = e?.name === 'AbortError' || e?.name === 'TimeoutError' ? `filter timeout after ${this.#timeoutMs} ms` : `filter failed: ${e?.message ?? String(err)}`;
      return { verdict: { action: 'tempfail', reason: why }, body: Buffer.alloc(0), filterMs: 0, totalMs: performance.now() - started };
    } finally {
      this.#inFlight--;
    }
  }

  async close(): Promise<void> {
    await this.#pool.destroy();
  }
}
