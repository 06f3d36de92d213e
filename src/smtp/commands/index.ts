// Verb recognition and dispatch. A verb is recognised from its first 4 bytes, case-folded
// with | 0x20 (RFC 5321 §2.4: verbs are case-insensitive), without decoding the line; only
// the short argument string is decoded for the handler, after checking it is UTF-8 (RFC 6531
// §3.3, RFC 3629): a lenient decode would turn bad bytes into U+FFFD and accept them.
import { isUtf8 } from 'node:buffer';
import { R, reply, type Reply } from '../../protocol/reply.js';
import type { Session } from '../session.js';
import { helo, ehlo } from './helo.js';
import { mail } from './mail.js';
import { rcpt } from './rcpt.js';
import { data } from './data.js';
import { bdat } from './bdat.js';
import { starttls } from './starttls.js';
import { auth } from './auth.js';
import { rset, noop, quit, vrfy, help, expn } from './simple.js';

type Handler = (s: Session, args: string) => Reply | Promise<Reply> | null;

function key(v: string): number {
  return ((v.charCodeAt(0) << 24) | (v.charCodeAt(1) << 16) | (v.charCodeAt(2) << 8) | v.charCodeAt(3)) >>> 0;
}

const HANDLERS = new Map<number, { verb: string; fn: Handler; anytime?: boolean }>([
  [key('helo'), { verb: 'HELO', fn: helo }],
  [key('ehlo'), { verb: 'EHLO', fn: ehlo }],
  [key('mail'), { verb: 'MAIL', fn: mail }],
  [key('rcpt'), { verb: 'RCPT', fn: rcpt }],
  [key('data'), { verb: 'DATA', fn: data }],
  [key('bdat'), { verb: 'BDAT', fn: bdat }],
  [key('rset'), { verb: 'RSET', fn: rset, anytime: true }],
  [key('noop'), { verb: 'NOOP', fn: noop, anytime: true }],
  [key('quit'), { verb: 'QUIT', fn: quit, anytime: true }],
  [key('vrfy'), { verb: 'VRFY', fn: vrfy }],
  [key('expn'), { verb: 'EXPN', fn: expn }],
  [key('help'), { verb: 'HELP', fn: help, anytime: true }],
  [key('auth'), { verb: 'AUTH', fn: auth }],
  [key('star'), { verb: 'STARTTLS', fn: starttls }],
]);

/** Commands that exist in SMTP but that postern does not implement: 502 rather than 500. */
const KNOWN_UNIMPLEMENTED = new Set(['turn', 'etrn', 'atrn', 'send', 'soml', 'saml', 'xclient', 'xforward'].map((v) => key(v)));

export function dispatch(s: Session, line: Buffer): Reply | Promise<Reply> | null {
  if (line.length < 4) return R.unrecognized;
  const k = (((line[0]! | 0x20) << 24) | ((line[1]! | 0x20) << 16) | ((line[2]! | 0x20) << 8) | (line[3]! | 0x20)) >>> 0;
  const h = HANDLERS.get(k);
  if (h === undefined) return KNOWN_UNIMPLEMENTED.has(k) ? R.notImplemented : R.unrecognized;
  const vlen = h.verb.length;
  if (vlen > 4) {
    // STARTTLS: the whole verb must match.
    if (line.length < vlen) return R.unrecognized;
    for (let i = 4; i < vlen; i++) if ((line[i]! | 0x20) !== (h.verb.charCodeAt(i) | 0x20)) return R.unrecognized;
  }
  if (line.length > vlen && line[vlen] !== 0x20) return R.unrecognized;
  if (s.ctx.draining && !s.inTransaction && !h.anytime) {
    return reply(421, '4.3.2', `${s.ctx.config.hostname} Service shutting down`, true);
  }
  if (!isUtf8(line)) return h.fn === mail || h.fn === rcpt ? R.badUtf8Address : R.badUtf8;
  const args = line.length > vlen + 1 ? line.toString('utf8', vlen + 1).trim() : '';
  return h.fn(s, args);
}
