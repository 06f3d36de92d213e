// Destination affinity: SMTP/LMTP sockets run in `threads` worker threads instead of the main
// thread. Each destination key is pinned to one worker by a stable hash (FNV-1a), so that
// destination's connection pool lives in exactly one place and keeps its reuse. The main
// thread only posts {id, dest, message, recipients, body} and matches the worker's
// {id, results} reply.
//
// Body handoff: postMessage would structured-clone a Buffer's *whole* backing ArrayBuffer (an
// 8 KiB pool slab for a small body). Instead the bytes always travel as a transferred
// ArrayBuffer of exactly the body's length:
//   - bodyTransfer 'copy' (default): one memcpy into a fresh ArrayBuffer, which is transferred.
//     The caller's Buffer is left intact. This is required today: the scheduler hands the SAME
//     body Buffer to every destination group of a message, so detaching it would make the
//     second group send an empty body.
//   - bodyTransfer 'transfer': when req.body owns its whole (non-pool) ArrayBuffer, that buffer
//     is transferred with no copy and the caller's req.body is detached (length 0) afterwards.
//     Only safe when each deliver() gets a body nobody else reads.
// A body that arrives already detached (length 0 while the message says otherwise) is refused
// with a transient result rather than sent empty.
//
// Failures never reject: a worker error, a worker exit (its in-flight requests), a closed
// transport all become transient results for every recipient. A worker that exits is replaced
// on its slot's next deliver().
import { Worker } from 'node:worker_threads';
import type { Destination, DeliveryRequest, RecipientResult, Transport } from './types.js';
import type { SmtpTransportOptions } from './smtp-transport.js';
import type { WorkerNotice, WorkerReply, WorkerRequest, WorkerSetup } from './affinity-worker.js';
import { invalidArgument } from '../lib/invalid-argument.js';

export interface AffinityTransportOptions {
  /** Number of worker threads (≥ 1). */
  threads: number;
  /**
   * Passed to the SmtpTransport inside each worker. Its callbacks (tlsOutcomes, onTlsFallback,
   * onCredentialsError) stay on this thread and are called from the workers' messages; the
   * rest must be structured-cloneable.
   */
  smtp: SmtpTransportOptions;
  /** See the header comment. Default 'copy'. */
  bodyTransfer?: 'copy' | 'transfer';
  /** How long close() waits for workers to finish in-flight work and exit. Default 5000. */
  closeTimeoutMs?: number;
}

export interface AffinityThreadStats {
  slot: number;
  /** worker.threadId of the current worker, or null when none is running. */
  threadId: number | null;
  /** Workers started on this slot (1 + restarts). */
  started: number;
  /** Workers that exited without close() being asked for. */
  crashes: number;
  /** deliver() calls routed to this slot. */
  requests: number;
  inFlight: number;
  /** Body bytes copied on the main thread before transfer (0 for zero-copy transfers). */
  bytesCopied: number;
  /** Body bytes handed over by transfer without a copy. */
  bytesTransferred: number;
}

interface Pending {
  resolve: (r: RecipientResult[]) => void;
  dest: Destination;
  req: DeliveryRequest;
}

interface Slot {
  worker: Worker | null;
  pending: Map<number, Pending>;
  stats: AffinityThreadStats;
}

/** 32-bit FNV-1a over the key's UTF-16 code units: stable across processes and restarts. */
export function fnv1a(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class AffinityTransport implements Transport {
  readonly #o: AffinityTransportOptions;
  readonly #slots: Slot[];
  #nextId = 1;
  #closing: Promise<void> | null = null;

  constructor(opts: AffinityTransportOptions) {
    if (!Number.isInteger(opts.threads) || opts.threads < 1) throw invalidArgument(`AffinityTransport: threads must be an integer ≥ 1 (got ${opts.threads})`);
    this.#o = opts;
    this.#slots = Array.from({ length: opts.threads }, (_, slot) => ({
      worker: null,
      pending: new Map(),
      stats: { slot, threadId: null, started: 0, crashes: 0, requests: 0, inFlight: 0, bytesCopied: 0, bytesTransferred: 0 },
    }));
  }

  /** The worker slot a destination key is pinned to. */
  threadFor(key: string): number {
    return fnv1a(key) % this.#slots.length;
  }

  stats(): AffinityThreadStats[] {
    return this.#slots.map((s) => ({ ...s.stats, inFlight: s.pending.size }));
  }

  deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    if (this.#closing) return Promise.resolve(failAll(dest, req, 'transport closed'));
    const body = req.body;
    if (body.length === 0 && body.buffer.byteLength === 0 && req.message.size > 0) {
      return Promise.resolve(failAll(dest, req, 'message body buffer was detached (already transferred to another thread)'));
    }
    const slot = this.#slots[this.threadFor(dest.key)]!;
    slot.stats.requests++;
    let worker: Worker;
    try {
      worker = this.#worker(slot);
    } catch (err) {
      return Promise.resolve(failAll(dest, req, `delivery thread failed to start: ${(err as Error).message}`));
    }
    const { ab, copied } = this.#bodyBuffer(body);
    const id = this.#nextId++;
    const msg: WorkerRequest = { id, dest, message: req.message, recipients: req.recipients, body: ab };
    return new Promise<RecipientResult[]>((resolve) => {
      slot.pending.set(id, { resolve, dest, req });
      if (slot.pending.size === 1) worker.ref();
      try {
        const n = ab.byteLength; // read before the transfer detaches it
        worker.postMessage(msg, [ab]);
        if (copied) slot.stats.bytesCopied += n;
        else slot.stats.bytesTransferred += n;
      } catch (err) {
        this.#settle(slot, id, failAll(dest, req, `could not hand the message to its delivery thread: ${(err as Error).message}`));
      }
    });
  }

  close(): Promise<void> {
    this.#closing ??= Promise.all(this.#slots.map((s) => this.#closeSlot(s))).then(() => undefined);
    return this.#closing;
  }

  /** Test hook: terminate a slot's worker as if it crashed. */
  async _terminateThread(slot: number): Promise<void> {
    await this.#slots[slot]?.worker?.terminate();
  }

  #bodyBuffer(body: Buffer): { ab: ArrayBuffer; copied: boolean } {
    const buf = body.buffer;
    const owned =
      this.#o.bodyTransfer === 'transfer' &&
      buf instanceof ArrayBuffer &&
      body.byteOffset === 0 &&
      body.byteLength === buf.byteLength &&
      // Node's allocation pool hands out slices of a Buffer.poolSize slab; a slice never covers
      // it all, but be conservative about a slab-sized buffer.
      buf.byteLength !== Buffer.poolSize;
    if (owned) return { ab: buf, copied: false };
    const ab = new ArrayBuffer(body.byteLength);
    new Uint8Array(ab).set(body);
    return { ab, copied: true };
  }

  #worker(slot: Slot): Worker {
    if (slot.worker) return slot.worker;
    const { tlsOutcomes, onTlsFallback, onCredentialsError, ...cloneable } = this.#o.smtp;
    const setup: WorkerSetup = { smtp: cloneable, reportTls: tlsOutcomes !== undefined, reportTlsFallback: onTlsFallback !== undefined };
    const w = new Worker(new URL('./affinity-worker.js', import.meta.url), { workerData: setup });
    slot.worker = w;
    slot.stats.started++;
    slot.stats.threadId = w.threadId;
    // An idle pool must not keep the process alive; a worker with requests in flight does.
    w.unref();
    let lastError: Error | null = null;
    w.on('message', (m: WorkerReply | WorkerNotice) => {
      if (!m || typeof m !== 'object') return;
      if ('id' in m) {
        if (typeof m.id === 'number') this.#settle(slot, m.id, m.results);
      } else if ('tlsOutcome' in m) tlsOutcomes?.record(m.tlsOutcome);
      else if ('tlsFallback' in m) onTlsFallback?.(m.tlsFallback);
      else if ('credentialsError' in m) onCredentialsError?.(new Error(m.credentialsError));
    });
    w.on('error', (err) => {
      lastError = err;
    });
    w.on('messageerror', (err) => {
      lastError = err;
    });
    w.on('exit', (code) => {
      if (slot.worker === w) {
        slot.worker = null;
        slot.stats.threadId = null;
      }
      if (!this.#closing) slot.stats.crashes++;
      const why = this.#closing ? 'transport closed' : `delivery thread exited (code ${code}${lastError ? `: ${lastError.message}` : ''})`;
      for (const [id, p] of [...slot.pending]) this.#settle(slot, id, failAll(p.dest, p.req, why));
    });
    return w;
  }

  #settle(slot: Slot, id: number, results: RecipientResult[]): void {
    const p = slot.pending.get(id);
    if (!p) return;
    slot.pending.delete(id);
    if (slot.pending.size === 0) slot.worker?.unref();
    p.resolve(results);
  }

  async #closeSlot(slot: Slot): Promise<void> {
    const w = slot.worker;
    if (!w) return;
    const exited = new Promise<void>((r) => w.once('exit', () => r()));
    w.ref(); // keep the process up until the worker has said goodbye
    try {
      w.postMessage({ close: true });
    } catch {
      /* already gone */
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), this.#o.closeTimeoutMs ?? 5000)))]);
    clearTimeout(timer);
    if (timedOut) await w.terminate(); // resolves once the thread is gone (also if it already was)
  }
}

function failAll(dest: Destination, req: DeliveryRequest, text: string): RecipientResult[] {
  const reply = { text, enhanced: '4.3.0', transient: true, destination: dest.key, at: Date.now() };
  return req.recipients.map((r) => ({ kind: 'deferred', address: r.address, reply }));
}
