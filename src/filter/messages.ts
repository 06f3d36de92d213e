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

export interface FilterResult {
  verdict: Verdict;
  /** Where the composed message (prefix + verdict headers + body) lies in the batch's bodies; length 0 when refused. */
  offset: number;
  length: number;
  /** Time spent in the filters themselves, for the hand-off overhead figure. */
  filterMs: number;
}

/** One Piscina task: the messages of a batch, answered in the same order. */
export interface FilterBatch {
  tasks: FilterTask[];
  /** The batch's slot in the pool's running table (workerData.running), where the worker puts its threadId. */
  slot: number;
}

export interface FilterBatchResult {
  results: FilterResult[];
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
