// STARTTLS (RFC 3207). After the 220 the session discards every byte the client pipelined
// behind the command before the handshake (the CVE-2011-0411 class of bug) and forgets the
// plaintext state; the upgrade itself is in session.ts.
import { R, reply, type Reply } from '../../protocol/reply.js';
import type { Session } from '../session.js';

export function starttls(s: Session, args: string): Reply {
  if (args !== '') return reply(501, '5.5.4', 'STARTTLS takes no arguments');
  if (s.ctx.tls === null) return R.notImplemented;
  if (s.secure) return R.alreadyTls;
  if (s.tx !== null) return R.badSequence;
  s.mode = 'tls';
  return R.readyTls;
}
