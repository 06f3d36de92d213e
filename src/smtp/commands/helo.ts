// HELO and EHLO (RFC 5321 §4.1.1.1) and the EHLO capability list (RFC 1869 and each
// extension's RFC). Both reset the transaction. The client's name is recorded, never
// verified against its address (§4.1.4: MUST NOT refuse on a mismatch).
import { reply, type Reply } from '../../protocol/reply.js';
import type { Session } from '../session.js';

const NAME = /^[\x21-\x7e\u0080-\u{10FFFF}]{1,255}$/u;

export function helo(s: Session, args: string): Reply {
  if (!NAME.test(args)) return reply(501, '5.5.4', 'HELO requires a domain name');
  s.helo = args;
  s.esmtp = false;
  s.tx = null;
  return reply(250, '', `${s.ctx.config.hostname}`);
}

export function ehlo(s: Session, args: string): Reply {
  if (!NAME.test(args)) return reply(501, '5.5.4', 'EHLO requires a domain name or address literal');
  s.helo = args;
  s.esmtp = true;
  s.tx = null;
  return reply(250, '', capabilities(s));
}

export function authOffered(s: Session): boolean {
  return s.ctx.users !== null && s.authUser === undefined && (s.secure || !s.ctx.config.requireTlsForAuth);
}

export function capabilities(s: Session): string[] {
  const c = s.ctx.config;
  const lines = [
    `${c.hostname} greets ${s.helo ?? ''}`.trim(),
    'PIPELINING',
    `SIZE ${c.maxMessageBytes}`,
    '8BITMIME',
    'SMTPUTF8',
    'ENHANCEDSTATUSCODES',
    'CHUNKING',
    'DSN',
    'MT-PRIORITY',
  ];
  if (s.ctx.tls && !s.secure) lines.push('STARTTLS');
  if (authOffered(s)) lines.push('AUTH PLAIN LOGIN');
  // RFC 8689 §2: offered only once the session is under TLS.
  if (s.secure) lines.push('REQUIRETLS');
  lines.push('HELP');
  return lines;
}
