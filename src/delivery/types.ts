// The shapes shared by the delivery side: where a recipient goes (Destination), what a
// transport is asked to do (DeliveryRequest) and what it answers per recipient
// (RecipientResult). Transports never touch the queue; the scheduler settles their results.
import type { MessageRecord, Recipient, ReplyRecord } from '../queue/store.js';
import type { HostPort, PipeTarget, TlsPolicy } from '../config/routes.js';
import type { TlsPolicyType } from './tls-outcome.js';
import { cutText, LAST_REPLY_TEXT_CHARS } from '../queue/records.js';

export type { HostPort, TlsPolicy };

/** A TLSA record (RFC 6698 §2.1) as DANE (RFC 7672) uses it: usage 2 or 3, selector 0/1, matching 0/1/2. */
export interface TlsaRecord {
  usage: number;
  selector: number;
  matching: number;
  /** The association data, hex. */
  data: string;
}

/**
 * The authenticated-TLS policy of an MX delivery (tls-policy.ts): which policy applies to the
 * recipient domain, whether a failure stops the delivery (enforce) or is only reported, and
 * what the peer is checked against. Plain data: it crosses to delivery threads.
 */
export interface TlsAuth {
  policyDomain: string;
  type: TlsPolicyType;
  /** true: verified TLS or no delivery (MTA-STS enforce, DANE); false: deliver and report. */
  enforce: boolean;
  /** MTA-STS: the policy's lines and mx patterns (reported with each outcome). */
  strings?: string[];
  mxHosts?: string[];
  /** DANE: the usable TLSA records per MX host name. */
  tlsa?: Record<string, TlsaRecord[]>;
}

/**
 * Where a group of recipients is delivered. `key` identifies the destination for pooling,
 * throttling and circuit breaking (e.g. "smtp:mx1.example.org:25", "lmtp:127.0.0.1:24").
 */
export type Destination =
  | {
      kind: 'smtp';
      key: string;
      hosts: HostPort[];
      tlsPolicy: TlsPolicy;
      /** the name to verify/SNI when TLS is required */
      domain?: string;
      shape?: DestinationShape;
      /** The hosts came from the recipient domain's MX (or implicit MX): its TLS policies apply. */
      viaMx?: boolean;
      /** MTA-STS or DANE, or "no-policy-found" (reported only). */
      tlsAuth?: TlsAuth;
      /** The credentials file of outbound AUTH (config/smtp-credentials.ts): a path, never a password. */
      auth?: string;
    }
  | { kind: 'lmtp'; key: string; hosts: HostPort[]; tlsPolicy: TlsPolicy; shape?: DestinationShape }
  | { kind: 'maildir'; key: string; root: string }
  | { kind: 'webhook'; key: string; url: string }
  /** A program run per recipient (pipe-transport.ts); `route` is the pattern whose target it is. */
  | { kind: 'pipe'; key: string; route: string; target: PipeTarget }
  | { kind: 'bounce'; key: string; reply: ReplyRecord }
  /** The bounce processor (bounce-processor.ts): DSNs and ARF reports addressed to us. */
  | { kind: 'bounces'; key: string };

/** What the shaping file (delivery/shaping/) says about the connections to one destination. */
export interface DestinationShape {
  /** The shaping file's site ('' when no rule matched: the destination is its own site). */
  site: string;
  /** The egress source's name ('default': no pool applies, the system picks the address). */
  source: string;
  /** The pool the source was picked from (absent with the 'default' source). */
  pool?: string;
  /** The source's local address to bind, and its EHLO name (absent for 'default'). */
  localAddress?: string;
  heloName?: string;
  /** The site's max_connections: the pool's cap (the shaper's window, at most this, is the limit in force). */
  maxConnections?: number;
  maxMessagesPerConnection?: number;
  /** false: never pipeline (RFC 2920) even when offered. */
  pipelining?: boolean;
  /** false: never use BDAT (RFC 3030) even when offered. */
  chunking?: boolean;
}

export interface DeliveryRequest {
  /** The queue record (envelope, DSN parameters, smtputf8, bodyType). */
  message: MessageRecord;
  /** Only the recipients bound for this destination, all pending. */
  recipients: Recipient[];
  /**
   * The bytes to send: the queued body with the worker stage's additions (a DKIM signature
   * from the workers issue) already prepended. Owned by the request (a copy out of LMDB);
   * transports must not modify it.
   */
  body: Buffer;
}

/**
 * One recipient's outcome: delivered, deferred (tried again later) or failed (bounced).
 * A deferral with `tried: false` sent nothing (the destination's circuit is open), so it is
 * no attempt.
 */
export type RecipientResult =
  | { kind: 'delivered'; address: string; reply: ReplyRecord }
  | { kind: 'deferred'; address: string; reply: ReplyRecord; tried?: false }
  | { kind: 'failed'; address: string; reply: ReplyRecord };

/** A recipient that was not delivered: failed when the reply is permanent, else deferred. */
export function notDelivered(address: string, reply: ReplyRecord): RecipientResult {
  return reply.transient === false ? { kind: 'failed', address, reply } : { kind: 'deferred', address, reply };
}

export interface Transport {
  /** Never rejects for a delivery failure: every recipient gets a result. */
  deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]>;
  /** Close idle connections and pools. */
  close(): Promise<void>;
}

/**
 * Build a reply record; the retry logic reads code/enhanced/transient, never the text. The
 * text is cut to what a record keeps (LAST_REPLY_TEXT_CHARS): a remote server chooses it, up to
 * the reply reader's 64 KiB, and it goes on into the log line, the event and the bounce of every
 * recipient of every attempt (100 recipients answered with 64 KiB each added 6.4 MB of log and
 * of event log per attempt before).
 */
export function replyRecord(code: number | undefined, enhanced: string | undefined, text: string, command: string | undefined, destination: string): ReplyRecord {
  const r: ReplyRecord = { text: cutText(text, LAST_REPLY_TEXT_CHARS), destination, at: Date.now(), transient: code === undefined || (code >= 400 && code < 500) };
  if (code !== undefined) r.code = code;
  if (enhanced !== undefined) r.enhanced = enhanced;
  if (command !== undefined) r.command = command;
  return r;
}
