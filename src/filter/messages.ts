// The wire types between the acceptor and the filter workers (Piscina). Bodies cross as
// transferred ArrayBuffers, never structured-cloned; errors cross as { code, message }.

export interface FilterEnvelope {
  sender: string;
  recipients: string[];
  client: { ip: string; helo: string; tls: boolean; authUser?: string; trusted: boolean };
}

export interface FilterTask {
  id: string;
  envelope: FilterEnvelope;
  /** The trace header(s) postern prepends (Received:), as text; the worker composes the final body. */
  prefix: string;
  /** The message as received, transferred (the sender loses it). */
  body: ArrayBuffer;
}

/** A verdict is plain data. `headers` are complete header lines (CRLF-terminated) to prepend. */
export interface Verdict {
  action: 'accept' | 'tempfail' | 'reject' | 'quarantine';
  score?: number;
  reason?: string;
  headers?: string;
}

/** Verdict actions by their index in FilterBatchResult.actions. */
export const ACTIONS: ReadonlyArray<Verdict['action']> = ['accept', 'tempfail', 'reject', 'quarantine'];

/** One Piscina task: the messages of a batch, answered in the same order. */
export interface FilterBatch {
  tasks: FilterTask[];
  /** The batch's slot in the pool's running table (workerData.running), where the worker puts its threadId. */
  slot: number;
}

/**
 * A batch's answer, flat: a few typed arrays clone far cheaper than an object per message
 * (structured clone ≈1 µs a message for {verdict: {...}, offset, ...} objects, ≈0.1 µs this way).
 */
export interface FilterBatchResult {
  /** Message i: its verdict's ACTIONS index. */
  actions: Uint8Array;
  /**
   * Message i at 4i: the verdict's score (NaN when it has none), the time in the filters
   * themselves (for the hand-off figure), then where its composed message (prefix + verdict
   * headers + body) lies in `bodies`: offset and length (0 when refused).
   */
  nums: Float64Array;
  /** Reason and headers of the verdicts that carry them, by message index (most carry none). */
  extras: Record<number, { reason?: string; headers?: string }>;
  /** The batch's composed messages end to end, moved back (one ArrayBuffer for the whole batch). */
  bodies: ArrayBuffer;
  /** The worker's time on the whole batch (receiving excluded): filters, composing, bookkeeping. */
  busyMs: number;
}

/** What a filter module's default export receives. */
export interface FilterInput {
  id: string;
  envelope: FilterEnvelope;
  /** A view of the message bytes: valid during the call only. */
  body: Buffer;
}

export type FilterFunction = (input: FilterInput) => Verdict | void | Promise<Verdict | void>;
