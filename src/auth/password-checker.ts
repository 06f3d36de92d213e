// Password checks for AUTH, off libuv's thread pool: scrypt runs in worker threads of its own
// (POSTERN_AUTH_CONCURRENCY of them, one check each at a time), never in the 4 threads that
// fs.*, dns.lookup and Maildir writes share. At most `concurrency` checks run at once; up to
// `maxQueue` more wait in arrival order; past that verify() answers 'busy' at once (the session
// says 454 4.7.0). A check whose session has gone by its turn is dropped without running.
import { Worker } from 'node:worker_threads';
import { parseScryptHash } from './users.js';
import type { Result } from '../lib/result.js';
import { PosternError } from '../errors.js';

/** What the main thread sends a checker thread: one password and its stored hash's parts. */
export interface ScryptJob {
  password: string;
  salt: Uint8Array;
  expected: Uint8Array;
  N: number;
  r: number;
  p: number;
}

/** From the scrypt thread: whether the password matched, or why it could not be checked. */
export type ScryptAnswer = Result<boolean, string>;

/** 'busy': the queue is full (or the checker closed); nothing was checked. */
export type PasswordCheckResult = 'ok' | 'bad' | 'busy';

export interface PasswordCheckerOptions {
  concurrency: number;
  maxQueue: number;
}

interface Pending {
  job: ScryptJob;
  /** True when the asker no longer wants the answer (its session closed). */
  gone: () => boolean;
  resolve: (r: PasswordCheckResult) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  current: Pending | null;
}

const WORKER_URL = new URL('./scrypt-worker.js', import.meta.url);

/*
 * The waiting line is an array read from `#head`; it is compacted when the read part
 * outgrows the unread part, so each check costs O(1) amortised:
 *
 *   #waiting: [ done | done | next | ... | last ]
 *                            ^ #head
 */
export class PasswordChecker {
  readonly #opts: PasswordCheckerOptions;
  readonly #slots: Slot[] = [];
  #waiting: Pending[] = [];
  #head = 0;
  #closed = false;
  /** Checks run, for tests and metrics. */
  checks = 0;
  /** Most checks seen running at once. */
  peakRunning = 0;

  constructor(opts: PasswordCheckerOptions) {
    this.#opts = opts;
  }

  get running(): number {
    return this.#slots.filter((s) => s.current !== null).length;
  }

  get queued(): number {
    return this.#waiting.length - this.#head;
  }

  /** Checks `password` against a stored "scrypt$…" hash; a malformed hash is 'bad'. */
  verify(password: string, stored: string, gone: () => boolean = () => false): Promise<PasswordCheckResult> {
    const h = parseScryptHash(stored);
    if (h === null) return Promise.resolve('bad');
    if (this.#closed || this.queued >= this.#opts.maxQueue) return Promise.resolve('busy');
    return new Promise((resolve, reject) => {
      // Copies of their own: a small Buffer is a view of a shared 8 KiB pool, and cloning a
      // view for postMessage copies its whole backing store.
      const job = { password, salt: new Uint8Array(h.salt), expected: new Uint8Array(h.expected), N: h.N, r: h.r, p: h.p };
      this.#waiting.push({ job, gone, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.queued > 0) {
      const slot = this.#freeSlot();
      if (slot === null) return;
      const next = this.#waiting[this.#head]!;
      this.#waiting[this.#head++] = undefined as unknown as Pending;
      if (this.#head > 64 && this.#head * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      if (next.gone()) {
        next.resolve('busy');
        continue;
      }
      slot.current = next;
      this.checks++;
      this.peakRunning = Math.max(this.peakRunning, this.running);
      slot.worker.postMessage(next.job);
    }
  }

  #freeSlot(): Slot | null {
    for (const s of this.#slots) if (s.current === null) return s;
    if (this.#slots.length >= this.#opts.concurrency) return null;
    const worker = new Worker(WORKER_URL);
    worker.unref(); // an idle checker never keeps the process alive
    const slot: Slot = { worker, current: null };
    worker.on('message', (a: ScryptAnswer) => {
      const p = slot.current;
      slot.current = null;
      if (p !== null) {
        if (!a.ok) p.reject(new PosternError('PST_ERR_AUTH_CHECKER', `password check failed: ${a.error}`));
        else p.resolve(a.value ? 'ok' : 'bad');
      }
      this.#pump();
    });
    // A thread that dies fails its check and is replaced by the next one needed.
    const dead = (err: Error): void => {
      const i = this.#slots.indexOf(slot);
      if (i < 0) return;
      this.#slots.splice(i, 1);
      slot.current?.reject(err);
      slot.current = null;
      if (!this.#closed) this.#pump();
    };
    worker.on('error', dead);
    worker.on('exit', (code) => dead(new PosternError('PST_ERR_AUTH_CHECKER', `password check thread exited (code ${code})`)));
    this.#slots.push(slot);
    return slot;
  }

  /** Stops the threads; checks still waiting answer 'busy', running ones fail. */
  async close(): Promise<void> {
    this.#closed = true;
    for (let i = this.#head; i < this.#waiting.length; i++) this.#waiting[i]!.resolve('busy');
    this.#waiting = [];
    this.#head = 0;
    const slots = this.#slots.splice(0);
    for (const s of slots) s.current?.reject(new PosternError('PST_ERR_AUTH_CHECKER', 'password checker closed'));
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}
