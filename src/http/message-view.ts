// The JSON shape of a queued message in API answers: snake_case, ISO dates, priority by name.
// Built from MessageRecord field by field so a new internal field never leaks by accident.
import { PRIORITY_NAMES, type AttemptRecord, type MessageRecord, type ReplyRecord } from '../queue/store.js';
import { listState, type ListState } from '../queue/list-state.js';
import { sourceOfDestination } from '../lib/destination-source.js';

export { LIST_STATES, listState, type ListState } from '../queue/list-state.js';

export interface MessageView {
  id: string;
  state: MessageRecord['state'];
  /** `state` with ready split into ready (due) and scheduled (next attempt later), as GET /v1/queue counts them. */
  queue_state: ListState;
  priority: (typeof PRIORITY_NAMES)[number];
  sender: string;
  received_at: string;
  next_attempt_at: string;
  attempts: number;
  size: number;
  /** The pool a trusted client named (X-Postern-Pool, the API's `pool`); null: the sender's domain picks it. */
  pool: string | null;
  /**
   * `source`: the egress source of the recipient's last attempt (from its destination key); null when none applied.
   * `history`: its last attempts, oldest first (a few, each part cut to a bound: queue/records.ts); [] before the
   * first attempt and for attempts made before the queue kept them.
   */
  recipients: { address: string; domain: string; state: string; attempts: number; source: string | null; last_reply: ReplyView | null; history: AttemptView[] }[];
  client: MessageRecord['client'] | null;
  lease: { owner: string; expires_at: string } | null;
}

export interface ReplyView {
  code: number | null;
  enhanced: string | null;
  text: string;
  command: string | null;
  transient: boolean | null;
  destination: string | null;
  at: string | null;
}

export interface AttemptView {
  at: string;
  code: number | null;
  enhanced: string | null;
  text: string;
  destination: string | null;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function replyView(r: ReplyRecord | undefined): ReplyView | null {
  if (r === undefined) return null;
  return {
    code: r.code ?? null,
    enhanced: r.enhanced ?? null,
    text: r.text,
    command: r.command ?? null,
    transient: r.transient ?? null,
    destination: r.destination ?? null,
    at: r.at === undefined ? null : iso(r.at),
  };
}

function attemptView(a: AttemptRecord): AttemptView {
  return { at: iso(a.at), code: a.code ?? null, enhanced: a.enhanced ?? null, text: a.text, destination: a.destination ?? null };
}

/** The fields the full view and the summary share. */
function messageHead(m: MessageRecord, nowMs: number): Omit<MessageView, 'recipients' | 'client' | 'lease'> {
  return {
    id: m.id,
    state: m.state,
    queue_state: listState(m, nowMs),
    priority: PRIORITY_NAMES[m.priority],
    sender: m.sender,
    received_at: iso(m.receivedAt),
    next_attempt_at: iso(m.nextAttemptAt),
    attempts: m.attempts,
    size: m.size,
    pool: m.pool ?? null,
  };
}

export function messageView(m: MessageRecord, nowMs = Date.now()): MessageView {
  return {
    ...messageHead(m, nowMs),
    recipients: m.recipients.map((r) => ({
      address: r.address,
      domain: r.domain,
      state: r.state,
      attempts: r.attempts,
      source: sourceOfDestination(r.lastReply?.destination),
      last_reply: replyView(r.lastReply),
      history: (r.history ?? []).map(attemptView),
    })),
    client: m.client ?? null,
    lease: m.lease ? { owner: m.lease.owner, expires_at: iso(m.lease.expiresAt) } : null,
  };
}

/** Recipient addresses a summary names (the count says how many there are). */
export const SUMMARY_RECIPIENTS = 3;

export type MessageSummary = Omit<MessageView, 'recipients' | 'client' | 'lease'> & {
  recipients: number;
  pending: number;
  /** The first SUMMARY_RECIPIENTS recipient addresses. */
  recipient_addresses: string[];
  /** The most recent reply any recipient got (by its time), or null. */
  last_reply: ReplyView | null;
};

/** The shorter form used by the list endpoint. */
export function messageSummary(m: MessageRecord, nowMs = Date.now()): MessageSummary {
  let last: ReplyRecord | undefined;
  let pending = 0;
  for (const r of m.recipients) {
    if (r.state === 'pending') pending++;
    const lr = r.lastReply;
    if (lr !== undefined && (last === undefined || (lr.at ?? 0) > (last.at ?? 0))) last = lr;
  }
  return {
    ...messageHead(m, nowMs),
    recipients: m.recipients.length,
    pending,
    recipient_addresses: m.recipients.slice(0, SUMMARY_RECIPIENTS).map((r) => r.address),
    last_reply: replyView(last),
  };
}
