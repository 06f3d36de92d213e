// The wire types between the acceptor and the filter workers (Piscina). Bodies cross as
// transferred ArrayBuffers, never structured-cloned; the rest as strings and typed arrays.

export interface FilterEnvelope {
  sender: string;
  recipients: string[];
  client: {
    ip: string;
    helo: string;
    tls: boolean;
    authUser?: string;
    trusted: boolean;
    /**
     * With POSTERN_SENDER_LOGINS and AUTH: what authUser may send as, "local@domain" or
     * "@domain" (lib/sender-grant.ts forms); absent without a map (anything goes).
     */
    senders?: readonly string[];
  };
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

/**
 * One Piscina task: the messages of a batch, answered in the same order. Everything but the
 * bodies crosses as strings: a string clones as one copy, while an envelope object costs the
 * worker ≈1 µs a message to rebuild (its nested object and array), which no built-in filter
 * but DKIM and authres ever reads. The worker unpacks an envelope when a filter asks for it.
 */
export interface FilterBatch {
  /** Three strings per message i, at 3i: its id, its trace prefix (latin1 text), its packEnvelope(). */
  meta: string[];
  /** Message i's bytes as received, transferred (the sender loses them). */
  bodies: ArrayBuffer[];
  /** The batch's slot in the pool's running table (workerData.running), where the worker puts its threadId. */
  slot: number;
}

/**
 * An envelope as one string: three flag digits (tls, trusted, and 0 = no authUser, 1 = an
 * authUser, 2 = an authUser and its senders), then the ip, helo, authUser, the senders joined
 * by spaces (flag 2 only), the sender and each recipient, each on its own line. SMTP's
 * commands are lines, so its fields never hold a line break; one that does (an AUTH identity
 * can), or a sender grant that is empty or holds a space, is sent as JSON after 'J'.
 */
export function packEnvelope(e: FilterEnvelope): string {
  const c = e.client;
  const user = c.authUser ?? '';
  const senders = c.senders;
  let plain = !c.ip.includes('\n') && !c.helo.includes('\n') && !user.includes('\n') && !e.sender.includes('\n');
  let s: string;
  if (senders === undefined) s = `${c.tls ? 1 : 0}${c.trusted ? 1 : 0}${c.authUser === undefined ? 0 : 1}\n${c.ip}\n${c.helo}\n${user}\n${e.sender}`;
  else {
    plain &&= c.authUser !== undefined && senders.every((g) => g !== '' && !/[ \n]/.test(g));
    s = `${c.tls ? 1 : 0}${c.trusted ? 1 : 0}2\n${c.ip}\n${c.helo}\n${user}\n${senders.join(' ')}\n${e.sender}`;
  }
  for (const r of e.recipients) {
    plain &&= !r.includes('\n');
    s += '\n' + r;
  }
  return plain ? s : 'J' + JSON.stringify(e);
}

export function unpackEnvelope(s: string): FilterEnvelope {
  if (s.charCodeAt(0) === 0x4a /* J */) return JSON.parse(s.slice(1)) as FilterEnvelope;
  const f = s.split('\n');
  const client: FilterEnvelope['client'] = { ip: f[1]!, helo: f[2]!, tls: s[0] === '1', trusted: s[1] === '1' };
  if (s[2] === '0') return { sender: f[4]!, recipients: f.slice(5), client };
  client.authUser = f[3]!;
  if (s[2] === '1') return { sender: f[4]!, recipients: f.slice(5), client };
  client.senders = f[4] === '' ? [] : f[4]!.split(' ');
  return { sender: f[5]!, recipients: f.slice(6), client };
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
  /**
   * The reasons of the verdicts that give one, by message index (most give none). A verdict's
   * headers do not come back: they are in its composed message.
   */
  reasons: Record<number, string>;
  /** The batch's composed messages end to end, moved back (one ArrayBuffer for the whole batch). */
  bodies: ArrayBuffer;
  /** The worker's time on the whole batch (receiving excluded): filters, composing, bookkeeping. */
  busyMs: number;
}

/** What a filter module's default export receives. */
export interface FilterInput {
  id: string;
  /** A getter: unpacked on first use, then the same object for every filter of the message. */
  readonly envelope: FilterEnvelope;
  /** A view of the message bytes: valid during the call only. */
  body: Buffer;
}

export type FilterFunction = (input: FilterInput) => Verdict | void | Promise<Verdict | void>;
