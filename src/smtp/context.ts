// What every SMTP session shares with its server: the frozen config, the queue, the users,
// TLS, the network lists, the logger and the counters. Built once in server.ts.
import type { Config } from '../config/schema.js';
import type { TlsSetup } from '../config/resources.js';
import type { Queue } from '../queue/store.js';
import type { UserDb } from '../auth/users.js';
import type { PasswordChecker } from '../auth/password-checker.js';
import type { AuthPenalty } from '../auth/auth-penalty.js';
import type { SenderLogins } from '../auth/sender-logins.js';
import type { NetworkList } from '../lib/networks.js';
import type { Logger } from '../log/logger.js';
import type { FilterPool } from '../filter/pool.js';
import type { EventOrigin, MailEvent } from '../queue/events.js';
import type { RecipientMap } from '../config/recipient-map.js';
import type { LmtpVerifier } from './lmtp-verifier.js';
import type { VerpKey } from '../protocol/verp.js';
import type { BodyBudget } from './body-budget.js';

export interface SmtpCounters {
  connections: number;
  connectionsRejected: number;
  messagesAccepted: number;
  bytesAccepted: number;
  messagesRejected: number;
  recipientsAccepted: number;
  recipientsRejected: number;
  authFailures: number;
  tlsHandshakes: number;
  filterRejected: number;
  filterTempfailed: number;
  filterQuarantined: number;
}

export type { TlsSetup };

export interface SessionContext {
  readonly config: Readonly<Config>;
  readonly queue: Queue;
  users: UserDb | null;
  /** The AUTH password checks' own threads and queue; null when AUTH is off. */
  readonly passwords: PasswordChecker | null;
  /** AUTH failure counts per client and per user name. */
  readonly authPenalty: AuthPenalty;
  /** What each AUTH user may send as (POSTERN_SENDER_LOGINS); null: anything. Replaced on SIGHUP. */
  senderLogins: SenderLogins | null;
  /** Certificate and key as loaded (for the implicit-TLS server) and as one context (for STARTTLS). */
  readonly tls: TlsSetup | null;
  readonly trusted: NetworkList;
  readonly localDomains: ReadonlySet<string>;
  readonly log: Logger;
  readonly counters: SmtpCounters;
  /** Messages handed to the queue and not yet committed (back-pressure). */
  pendingWrites: number;
  /** POSTERN_MAX_BODY_MEMORY: the bytes of message bodies all sessions may hold at once. */
  readonly bodyBudget?: BodyBudget;
  /** The filter stage, or null when no filter is configured. */
  readonly filters: FilterPool | null;
  /**
   * Event webhooks: called for received and rejected messages (main.ts wires it when
   * configured). `origin` says whether an untrusted client caused it: such rejections are
   * summarised per client rather than logged one by one (events/event-recorder.ts).
   */
  onEvent?: (e: MailEvent, origin?: EventOrigin) => void;
  /** Called after each message is queued (main.ts wakes the delivery scheduler with it). */
  onQueued?: () => void;
  /** True once shutdown began: new commands get 421 when the session is idle. */
  draining: boolean;
  /** True while connections are at or past POSTERN_STRESS_PERCENT of the limit (set by the server). */
  stressed?: boolean;
  /** POSTERN_RECIPIENTS as last loaded (re-read when the file changes); absent: no map. */
  recipients?: { readonly current: RecipientMap };
  /** POSTERN_RCPT_VERIFY=lmtp: asks the LMTP server of a recipient's route at RCPT. */
  verifier?: LmtpVerifier;
  /** May a maildir route create this address's missing mailbox folder? (The transport asks the same.) Absent: no. */
  mayCreateMailbox?: (address: string) => boolean;
  /** POSTERN_VERP: its domain takes only addresses with a valid tag (recipient-check.ts). */
  verp?: VerpKey;
  /** Is this a pool of the shaping file now (the X-Postern-Pool header's check)? Absent: no pool exists. */
  poolExists?: (name: string) => boolean;
  /** POSTERN_BOUNCE_ADDRESSES (mapKey form): accepted without the recipient map. */
  bounceAddresses?: ReadonlySet<string>;
}
