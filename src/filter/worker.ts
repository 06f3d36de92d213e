// The filter worker (a Piscina task module): runs the configured filter modules over each
// message of a batch and composes its final body (trace prefix + filter headers + message) in
// this thread, so the acceptor's event loop never copies or parses message bytes for filtering.
// A filter that throws becomes that message's tempfail here; one that hangs is cut off by the
// pool's timeout (which ends the whole batch).
import { move, workerData, transferableSymbol, valueSymbol } from 'piscina';
import { PosternError } from '../errors.js';
import { threadId } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { ACTIONS, unpackEnvelope, type FilterBatch, type FilterBatchResult, type FilterEnvelope, type FilterFunction, type FilterInput, type Verdict } from './messages.js';

const modulePaths: string[] = (workerData as { modules?: string[] } | undefined)?.modules ?? [];
/** The pool's running table: this thread's id goes in a batch's slot while it runs it. */
const running: Int32Array | undefined = (workerData as { running?: Int32Array } | undefined)?.running;
let filters: Promise<FilterFunction[]> | null = null;

function load(): Promise<FilterFunction[]> {
  filters ??= Promise.all(
    modulePaths.map(async (p) => {
      const mod = (await import(pathToFileURL(resolve(p)).href)) as { default?: unknown };
      if (typeof mod.default !== 'function') throw new PosternError('PST_ERR_FILTER_MODULE', `filter module ${p} has no default export function`);
      return mod.default as FilterFunction;
    }),
  );
  return filters;
}

/** True when `s` has a LF not preceded by CR: filter headers are normalised to CRLF only then. */
function hasBareLf(s: string): boolean {
  for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) if (i === 0 || s.charCodeAt(i - 1) !== 13) return true;
  return false;
}

const SEVERITY: Record<Verdict['action'], number> = { accept: 0, quarantine: 1, tempfail: 2, reject: 3 };

interface Filtered {
  verdict: Verdict;
  filterMs: number;
  /** What goes before the message: prefix + filter headers, or null when it is refused. */
  head: string | null;
}

/** The verdicts of a message's filters so far, folded. */
interface Folded {
  verdict: Verdict;
  headers: string;
}

/** Fold one filter's verdict in; true when no later filter runs (reject, tempfail). */
function fold(acc: Folded, v: Verdict | null | undefined | void): boolean {
  if (!v) return false;
  if (v.headers) acc.headers += v.headers;
  if (v.score !== undefined) acc.verdict.score = Math.max(acc.verdict.score ?? -Infinity, v.score);
  if (SEVERITY[v.action] > SEVERITY[acc.verdict.action]) acc.verdict = { ...v, score: acc.verdict.score ?? v.score };
  return v.action === 'reject' || v.action === 'tempfail';
}

const isThenable = (v: unknown): v is PromiseLike<Verdict | void> => typeof (v as PromiseLike<unknown> | null)?.then === 'function';

const failed = (err: unknown): Verdict => ({ action: 'tempfail', reason: `filter error: ${(err as Error)?.message ?? String(err)}` });

function finish(acc: Folded, started: number): Filtered {
  const filterMs = performance.now() - started;
  const { verdict, headers } = acc;
  if (verdict.action === 'reject' || verdict.action === 'tempfail') return { verdict, filterMs, head: null };
  return { verdict, filterMs, head: !hasBareLf(headers) ? headers : headers.replace(/(?<!\r)\n/g, '\r\n') };
}

/** A message of a batch as its filters see it; the envelope is unpacked on first use. */
class Message {
  #envelope: FilterEnvelope | null = null;
  constructor(readonly id: string, readonly body: Buffer, private readonly packed: string) {}

  get envelope(): FilterEnvelope {
    return (this.#envelope ??= unpackEnvelope(this.packed));
  }

  /** Each filter gets its own input object (one cannot swap what the next sees); the envelope is shared, as before. */
  input(): FilterInput {
    return new Input(this);
  }
}

/** What a filter receives: id and body as own fields, the envelope through a getter (unpacked once, on first use). */
class Input implements FilterInput {
  readonly id: string;
  readonly body: Buffer;
  readonly #m: Message;
  constructor(m: Message) {
    this.id = m.id;
    this.body = m.body;
    this.#m = m;
  }

  get envelope(): FilterEnvelope {
    return this.#m.envelope;
  }
}

/**
 * Run a message's filters in order. Synchronous filters (the built-in ones) are called
 * without an await between them, so a message costs no microtask turns; the first filter
 * that returns a promise switches the rest of this message to filterRest.
 */
function filterOne(fs: FilterFunction[], m: Message): Filtered | Promise<Filtered> {
  const started = performance.now();
  const acc: Folded = { verdict: { action: 'accept' }, headers: '' };
  for (let k = 0; k < fs.length; k++) {
    let v: ReturnType<FilterFunction>;
    try {
      v = fs[k]!(m.input());
    } catch (err) {
      acc.verdict = failed(err);
      break;
    }
    if (isThenable(v)) return filterRest(fs, k, v, m, acc, started);
    if (fold(acc, v)) break;
  }
  return finish(acc, started);
}

async function filterRest(
  fs: FilterFunction[], k: number, pending: PromiseLike<Verdict | null | undefined | void>, m: Message, acc: Folded, started: number,
): Promise<Filtered> {
  try {
    if (!fold(acc, await pending)) {
      for (let j = k + 1; j < fs.length; j++) if (fold(acc, await fs[j]!(m.input()))) break;
    }
  } catch (err) {
    acc.verdict = failed(err);
  }
  return finish(acc, started);
}

/**
 * The batch this thread is on. The pool gives a worker its next batch while it still runs one
 * (so it never idles waiting for the acceptor to answer); the next one starts when this one
 * ends, never interleaved with it, so each message's filterMs is its own filters' time.
 */
let tail: Promise<unknown> = Promise.resolve();

export default function filterBatch(batch: FilterBatch): Promise<FilterBatchResult> {
  const run = tail.then(() => runBatch(batch));
  tail = run.catch(() => {});
  return run;
}

async function runBatch(batch: FilterBatch): Promise<FilterBatchResult> {
  const started = performance.now();
  if (running) Atomics.store(running, batch.slot, threadId);
  const fs = await load();
  const { meta } = batch;
  const n = batch.bodies.length;
  const bodies: Buffer[] = new Array(n);
  const filtered: Filtered[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const body = (bodies[i] = Buffer.from(batch.bodies[i]!));
    const f = filterOne(fs, new Message(meta[3 * i]!, body, meta[3 * i + 2]!));
    filtered[i] = f instanceof Promise ? await f : f;
  }
  // Compose every accepted message (trace prefix + filter headers + message) into one buffer
  // for the whole batch: one allocation and one transfer back, whatever the batch size. The
  // prefix arrives as latin1 text (the acceptor's bytes, one char each); filter headers are UTF-8.
  // (Composing each message right after its filters, while its bytes are still cached, measured
  // no faster.)
  let total = 0;
  for (let i = 0; i < n; i++) {
    const f = filtered[i]!;
    if (f.head !== null) total += meta[3 * i + 1]!.length + Buffer.byteLength(f.head) + bodies[i]!.length;
  }
  const out = Buffer.allocUnsafeSlow(total); // owns its whole ArrayBuffer; every byte is written below
  const actions = new Uint8Array(n);
  const nums = new Float64Array(4 * n);
  const reasons: FilterBatchResult['reasons'] = {};
  let at = 0;
  for (let i = 0; i < n; i++) {
    const { verdict, filterMs, head } = filtered[i]!;
    const offset = at;
    if (head !== null) {
      at += out.write(meta[3 * i + 1]!, at, 'latin1');
      at += out.write(head, at, 'utf8');
      at += bodies[i]!.copy(out, at);
    }
    const action = ACTIONS.indexOf(verdict.action);
    actions[i] = action < 0 ? 1 : action; // never happens (fold keeps known actions); tempfail, never a silent accept
    nums[4 * i] = verdict.score ?? NaN;
    nums[4 * i + 1] = filterMs;
    nums[4 * i + 2] = offset;
    nums[4 * i + 3] = at - offset;
    if (verdict.reason !== undefined) reasons[i] = verdict.reason;
  }
  const value: FilterBatchResult = { actions, nums, reasons, bodies: out.buffer as ArrayBuffer, busyMs: performance.now() - started };
  // Move the composed bodies back instead of cloning them (Piscina's Transferable protocol).
  return move({ [transferableSymbol]: [value.bodies], [valueSymbol]: value } as never) as unknown as FilterBatchResult;
}
