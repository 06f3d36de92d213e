// The JSON shape of a queued message in API answers: snake_case, ISO dates, priority by name.
// Built from MessageRecord field by field so a new internal field never leaks by accident.
import { PRIORITY_NAMES, type MessageRecord, type ReplyRecord } from '../queue/store.js';
import { sourceOfDestination } from '../lib/destination-source.js';

export interface MessageView {
  id: string;
  state: MessageRecord['state'];
  priority: (typeof PRIORITY_NAMES)[number];
  sender: string;
  received_at: string;
  next_attempt_at: string;
  attempts: number;
  size: number;
  /** The pool a trusted client named (X-Postern-Pool, the API's `pool`); null: the sender's domain picks it. */
  pool: string | null;
  /** `source`: the egress source of the recipient's last attempt (from its destination key); null when none applied. */
  recipients: { address: string; domain: string; state: string; attempts: number; source: string | null; last_reply: ReplyView | null }[];
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

/** The fields the full view and the summary share. */
function messageHead(m: MessageRecord): Omit<MessageView, 'recipients' | 'client' | 'lease'> {
  return {
    id: m.id,
    state: m.state,
    priority: PRIORITY_NAMES[m.priority],
    sender: m.sender,
    received_at: iso(m.receivedAt),
    next_attempt_at: iso(m.nextAttemptAt),
    attempts: m.attempts,
    size: m.size,
    pool: m.pool ?? null,
  };
}

export function messageView(m: MessageRecord): MessageView {
  return {
    ...messageHead(m),
    recipients: m.recipients.map((r) => ({ address: r.address, domain: r.domain, state: r.state, attempts: r.attempts, source: sourceOfDestination(r.lastReply?.destination), last_reply: replyView(r.lastReply) })),
    client: m.client ?? null,
    lease: m.lease ? { owner: m.lease.owner, expires_at: iso(m.lease.expiresAt) } : null,
  };
}

/** The shorter form used by the list endpoint. */
export function messageSummary(m: MessageRecord): Omit<MessageView, 'recipients' | 'client' | 'lease'> & { recipients: number; pending: number } {
  return {
    ...messageHead(m),
    recipients: m.recipients.length,
    pending: m.recipients.reduce((n, r) => n + (r.state === 'pending' ? 1 : 0), 0),
  };
}
