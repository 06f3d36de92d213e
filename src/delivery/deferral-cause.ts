// Whose fault a deferral is: the destination's (it is down, refuses connections, drops them,
// answers 421, fails TLS, or its circuit is open) or the message's own (a 4xx to its MAIL,
// RCPT or data: greylisting, a full mailbox, a content check). A destination deferral ties the
// message to the destination (queue wait index), so it is retried as soon as the destination
// is seen working again instead of after its own retry delay; docs/queue.md "Waiting for a
// destination". Reads only the fields the retry logic may read (kind, code, command).
import type { RecipientResult } from './types.js';
import { classifyReply, SHAPING_COMMAND } from './shaping/reply-class.js';

/** Commands whose failure is a failure to reach or set up the destination, not this message. */
export const CONNECTION_COMMANDS: ReadonlySet<string> = new Set(['CONNECT', 'GREETING', 'EHLO', 'HELO', 'LHLO', 'STARTTLS', 'TLS']);
/** Commands of a transaction on an open connection: no reply to one means the link failed. */
const TRANSACTION_COMMANDS: ReadonlySet<string> = new Set(['RSET', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'END-OF-DATA']);

/**
 * True when a deferral says the destination itself is not working:
 * - not tried (its circuit is open);
 * - 421 at any stage (RFC 5321 §3.8: the server is closing the channel; our own protocol
 *   error records use it too);
 * - a failure while connecting or setting up (connect, greeting, EHLO/LHLO, STARTTLS);
 * - no reply at all (connection lost or timed out mid-transaction: 4.4.2 with no code).
 * Any other 4xx is the message's own. Not the destination's either: a deferral the shaper made
 * (the site busy or suspended) or a throttle ("421 4.7.0 too many connections"): the
 * destination is up and asks for less, and shaping paces those retries itself.
 */
export function destinationCaused(r: RecipientResult): boolean {
  if (r.kind !== 'deferred') return false;
  if (r.reply.command === SHAPING_COMMAND) return false;
  if (r.tried === false) return true;
  const { code, command } = r.reply;
  if (classifyReply(r.reply) !== 'other') return false;
  if (code === 421) return true;
  if (command !== undefined && CONNECTION_COMMANDS.has(command)) return true;
  return code === undefined && command !== undefined && TRANSACTION_COMMANDS.has(command);
}
