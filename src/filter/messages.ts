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
  /** prefix + verdict headers + body, composed in the worker and moved back. */
  body: ArrayBuffer;
  /** Time spent in the filters themselves, for the hand-off overhead figure. */
  filterMs: number;
}

/** What a filter module's default export receives. */
export interface FilterInput {
  id: string;
  envelope: FilterEnvelope;
  /** A view of the message bytes: valid during the call only. */
  body: Buffer;
}

export type FilterFunction = (input: FilterInput) => Verdict | void | Promise<Verdict | void>;
