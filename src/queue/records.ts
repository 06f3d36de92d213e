// The stored form of a message record: one msgpackr Packr whose shared structures are a
// code constant, and the builders that give every record the same keys in the same order so
// that it hits them. Records hold no Buffers (the body lives in its own sub-database).
import { Packr } from 'msgpackr';
import type {
  EnvelopeInput,
  MessageRecord,
  MessageState,
  Priority,
  Recipient,
  RecipientInput,
  RecipientState,
  ReplyRecord,
} from './types.js';

// Why a constant and not lmdb-js's sharedStructuresKey: structures learned at run time must
// be saved durably before any record that uses them, and one minted inside a transaction that
// then fails would be lost while records keep pointing at it. A fixed list is never written,
// never lost; an unexpected shape still encodes (msgpackr writes its key list inline in that
// one value), it is only bigger.
// APPEND-ONLY. Stored records refer to these by index (record ids 0x40 + i): never reorder,
// rename or remove an entry, only add new ones at the end.
const MESSAGE_KEYS = [
  'id', 'seq', 'priority', 'state', 'receivedAt', 'nextAttemptAt', 'attempts', 'size',
  'sender', 'recipients', 'mtPriority', 'ret', 'envid', 'bodyType', 'smtputf8',
  'declaredSize', 'client', 'notBefore', 'lease',
];
const RECIPIENT_KEYS = ['address', 'domain', 'notify', 'orcpt', 'state', 'attempts', 'lastReply'];
const REPLY_KEYS = ['code', 'enhanced', 'text', 'command', 'transient', 'destination', 'at'];
const CLIENT_KEYS = ['ip', 'helo', 'tls', 'authUser', 'hostname'];
const LEASE_KEYS = ['owner', 'expiresAt'];
const STRUCTURES = [MESSAGE_KEYS, RECIPIENT_KEYS, REPLY_KEYS, CLIENT_KEYS, LEASE_KEYS];

const packr = new Packr({
  structures: STRUCTURES.map((keys) => keys.slice()),
  // No room for run-time shared structures: other shapes go inline (see the header).
  maxSharedStructures: STRUCTURES.length,
  useRecords: true,
});

/** Encode a record built by the functions below (any object encodes; those are compact). */
export function encodeRecord(rec: MessageRecord): Buffer {
  return packr.pack(rec);
}

/**
 * Decode a stored record. `bytes` may be an lmdb-js reusable buffer: everything is copied
 * into JS values here (records hold no Buffers), so the result outlives the buffer.
 */
export function decodeRecord(bytes: Uint8Array): MessageRecord {
  return packr.unpack(bytes) as MessageRecord;
}

/** Lower-cased part after the last '@'; '' for an address without one (RFC 5321 <postmaster>). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).toLowerCase();
}

export function makeReply(r: ReplyRecord | undefined, at: number): ReplyRecord | undefined {
  if (r === undefined) return undefined;
  return {
    code: r.code,
    enhanced: r.enhanced,
    text: typeof r.text === 'string' ? r.text : String(r.text ?? ''),
    command: r.command,
    transient: r.transient,
    destination: r.destination,
    at: r.at ?? at,
  };
}

export function makeRecipient(r: RecipientInput): Recipient {
  return {
    address: r.address,
    domain: domainOf(r.address),
    notify: r.notify === undefined ? undefined : r.notify.slice(),
    orcpt: r.orcpt,
    state: 'pending' as RecipientState,
    attempts: 0,
    lastReply: undefined,
  };
}

export function makeLease(owner: string, expiresAt: number): { owner: string; expiresAt: number } {
  return { owner, expiresAt };
}

function makeClient(c: EnvelopeInput['client']): EnvelopeInput['client'] {
  if (c === undefined) return undefined;
  return { ip: c.ip, helo: c.helo, tls: c.tls, authUser: c.authUser, hostname: c.hostname };
}

/** The new record of an accepted message, keys in MESSAGE_KEYS order. */
export function makeMessage(
  env: EnvelopeInput,
  id: string,
  seq: number,
  priority: Priority,
  receivedAt: number,
  nextAttemptAt: number,
  size: number,
): MessageRecord {
  const recipients = new Array<Recipient>(env.recipients.length);
  for (let i = 0; i < recipients.length; i++) recipients[i] = makeRecipient(env.recipients[i]!);
  return {
    id,
    seq,
    priority,
    state: (env.hold ? 'held' : 'ready') as MessageState,
    receivedAt,
    nextAttemptAt,
    attempts: 0,
    size,
    sender: env.sender,
    recipients,
    mtPriority: env.mtPriority,
    ret: env.ret,
    envid: env.envid,
    bodyType: env.bodyType,
    smtputf8: env.smtputf8,
    declaredSize: env.declaredSize,
    client: makeClient(env.client),
    notBefore: env.notBefore,
    lease: undefined,
  };
}

/** True when no recipient is pending any more (the message leaves the queue). */
export function isFinal(rec: MessageRecord): boolean {
  for (const r of rec.recipients) if (r.state === 'pending') return false;
  return true;
}
