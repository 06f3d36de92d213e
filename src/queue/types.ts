// The queue's public data shapes: what the SMTP server hands in (EnvelopeInput), what the
// delivery engine gets back (MessageRecord) and hands back (RecipientOutcome). Pure types
// plus the PRIORITY table; no behaviour lives here so every other queue file can import it.
import type { Logger } from '../log/logger.js';
import type { Result } from '../lib/result.js';

export const PRIORITY = { urgent: 0, normal: 1, bulk: 2 } as const;
export type Priority = 0 | 1 | 2;
export const PRIORITY_NAMES = ['urgent', 'normal', 'bulk'] as const;
/** Every priority, highest first. */
export const PRIORITIES: readonly Priority[] = [0, 1, 2];

export interface RecipientInput {
  address: string;
  /** DSN NOTIFY: ['NEVER'] or a subset of SUCCESS/FAILURE/DELAY. */
  notify?: string[];
  /** DSN ORCPT decoded, e.g. 'rfc822;a@b'. */
  orcpt?: string;
}

export interface EnvelopeInput {
  /** '' = null reverse-path <>. */
  sender: string;
  /** At least one. */
  recipients: RecipientInput[];
  /** Default 1 (normal). */
  priority?: Priority;
  /** RFC 6710 value -9..9 as received, kept for relaying. */
  mtPriority?: number;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  bodyType?: '7BIT' | '8BITMIME' | 'BINARYMIME';
  smtputf8?: boolean;
  declaredSize?: number;
  client?: { ip: string; helo?: string; tls?: boolean; authUser?: string; hostname?: string };
  /** ms epoch; the first attempt is not before this. */
  notBefore?: number;
  /** Store it held (quarantine): never leased until released. Not kept in the record. */
  hold?: boolean;
  /**
   * The shaping pool a trusted client chose (X-Postern-Pool, the API's `pool`): it wins over
   * the sender-domain rule (docs/shaping.md). Absent in records written before it existed.
   */
  pool?: string;
  /**
   * RFC 8689: 'yes' for a message sent with REQUIRETLS (relayed only over verified TLS to a
   * server offering REQUIRETLS), 'no' for one with "TLS-Required: No" (recipient TLS policies
   * do not stop it). Absent: neither. Absent in records written before it existed.
   */
  tlsRequired?: 'yes' | 'no';
}

export type RecipientState = 'pending' | 'delivered' | 'failed';

export interface ReplyRecord {
  code?: number;
  enhanced?: string;
  text: string;
  command?: string;
  transient?: boolean;
  destination?: string;
  at?: number;
}

/**
 * One delivery attempt in a recipient's history: its time and the reply, each part cut to a
 * bound (records.ts HISTORY_*) since the remote server chooses the text.
 */
export interface AttemptRecord {
  at: number;
  code?: number;
  enhanced?: string;
  text: string;
  destination?: string;
}

export interface Recipient {
  address: string;
  /** Lower-cased part after the last '@' ('' when there is none, e.g. <postmaster>). */
  domain: string;
  notify?: string[];
  orcpt?: string;
  state: RecipientState;
  attempts: number;
  lastReply?: ReplyRecord;
  /**
   * The last attempts, oldest first (at most records.ts historyDepth of the record). Absent
   * before the first attempt and in records written before it existed.
   */
  history?: AttemptRecord[];
}

/** A message whose recipients are all final is removed from the queue. */
export type MessageState = 'ready' | 'leased' | 'held';

export interface MessageRecord extends Omit<EnvelopeInput, 'recipients'> {
  id: string;
  seq: number;
  priority: Priority;
  recipients: Recipient[];
  state: MessageState;
  receivedAt: number;
  nextAttemptAt: number;
  attempts: number;
  /** Body size in bytes as stored. */
  size: number;
  lease?: { owner: string; expiresAt: number };
  /**
   * The destination keys whose outage deferred this message (docs/queue.md "Waiting for a
   * destination"): while it is ready, it is in the wait index under each, and it becomes due
   * at once when one of them is released. Absent in records written before it existed.
   */
  waitFor?: string[];
}

export type RecipientOutcome =
  | { address: string; kind: 'delivered'; reply?: ReplyRecord }
  /** tried: false = deferred without an attempt (e.g. a destination's open circuit): not counted. */
  /**
   * waitFor: the destination key whose own state (down, refusing, open circuit) caused the
   * deferral; the message then waits for it (released when it is seen working) as well as
   * for retryAt, whichever comes first.
   */
  | { address: string; kind: 'deferred'; retryAt: number; reply?: ReplyRecord; tried?: boolean; waitFor?: string }
  | { address: string; kind: 'failed'; reply?: ReplyRecord };

export interface QueueOptions {
  /** Folder of the LMDB environment; created if missing. */
  path: string;
  /** Initial map size; lmdb-js grows the map when it fills (default 1 GiB). */
  mapSizeBytes?: number;
  /** Default lease length (default 300_000). */
  leaseMs?: number;
  logger?: Logger;
  /** Injectable clock for tests (ms epoch). */
  now?: () => number;
}

export interface QueueCounts {
  total: number;
  byPriority: { urgent: number; normal: number; bulk: number };
  /** ready = due now; scheduled = ready but nextAttemptAt in the future. */
  byState: { ready: number; scheduled: number; leased: number; held: number };
  /** Pending recipients per domain (messages in any state). */
  byDomain: Record<string, number>;
}

export interface QueueStats {
  /** LMDB write transactions the queue issued (each is at most one fsync). */
  commits: number;
  /** Write transactions that carried at least one enqueue (messagesCommitted / this = messages per commit). */
  enqueueCommits: number;
  /** Messages whose enqueue committed. */
  messagesCommitted: number;
  /** Body plus record bytes of those messages. */
  bytesCommitted: number;
  /** Write transactions that failed (their operations were rejected). */
  failedCommits: number;
}

/**
 * What failRecipients did: the record as stored after (the final record when `removed`) and
 * the recipients failed now; or nothing, because the message is leased (a delivery in flight).
 */
export type FailRecipientsResult = Result<{ record: MessageRecord; failed: Recipient[]; removed: boolean }, 'leased'>;
