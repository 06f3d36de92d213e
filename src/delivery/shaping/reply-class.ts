// What a reply says about the sender rather than the recipient (docs/shaping.md, "Adaptive
// back-off"): a throttle ("421 4.7.0 Too many connections", "451 4.7.1 rate limited, try again
// later"), a configured pattern that suspends the source × site (a provider's "unusual rate of
// unsolicited mail"), or a blocklist listing ("5.7.1 ... blocked using ..."). Matched on the
// code and enhanced code first and on fixed, case-insensitive phrases of the text (never an
// operator's regular expression: the text is the network's, and a pattern is a substring).
import type { ReplyRecord } from '../../queue/store.js';
import { CONNECTION_COMMANDS } from '../deferral-cause.js';

export type ReplyClass =
  /** Refused at connection time (greeting, EHLO, STARTTLS): too many connections. */
  | 'throttle-connection'
  /** Refused within a transaction (MAIL, RCPT, DATA): too many messages too fast. */
  | 'throttle-rate'
  /** One of the site's `suspend_on` patterns. */
  | 'suspend'
  /** A DNSBL/RBL listing of the source. */
  | 'blocklist'
  | 'other';

/** Only this much of a reply's text is looked at: phrases come first in every known reply. */
const MAX_TEXT = 1024;

/** The command of a deferral the shaper made itself (site busy, suspended, stopping): never tried. */
export const SHAPING_COMMAND = 'SHAPING';

const THROTTLE = /too many (?:connections|concurrent|sessions|messages|recipients|mails)|rate[ -]?limit|throttl|too fast|slow down|try (?:again )?later|temporarily (?:deferred|rate)|exceeded .*(?:rate|limit|quota)|(?:rate|limit|quota) exceeded|connection limit/;
// Greylisting also says "try again later", but it asks for minutes, not a lower rate.
const GREYLIST = /gr[ae]y ?list/;
const BLOCKLIST = /blocked using|block ?list|black ?list|listed (?:at|on|in|by) |\bdnsbl\b|\brbl\b|spamhaus|spamcop|barracuda ?(?:central|reputation)/;

/**
 * Classify one failed reply. `suspendOn`: the site's patterns, lower case. Replies we made
 * ourselves (no code: timeouts, network errors) are never throttles: a dead host is for the
 * circuit breaker.
 */
export function classifyReply(reply: ReplyRecord, suspendOn: readonly string[] = []): ReplyClass {
  const code = reply.code;
  if (code === undefined || code < 400) return 'other';
  const text = reply.text.slice(0, MAX_TEXT).toLowerCase();
  for (const p of suspendOn) if (text.includes(p)) return 'suspend';
  const enhanced = reply.enhanced ?? '';
  if (code >= 500) return (enhanced === '' || enhanced.startsWith('5.7.')) && BLOCKLIST.test(text) ? 'blocklist' : 'other';
  if (GREYLIST.test(text)) return 'other';
  // 4.7.x is "security or policy status" (RFC 3463 §3.8), where throttles live; a 421 at any
  // stage closes the channel. Either, with a throttling phrase.
  if (!(code === 421 || enhanced.startsWith('4.7.') || code === 450 || code === 451 || code === 452)) return 'other';
  if (!THROTTLE.test(text)) return 'other';
  return CONNECTION_COMMANDS.has(reply.command ?? '') ? 'throttle-connection' : 'throttle-rate';
}
