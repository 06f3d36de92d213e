// RSET, NOOP, QUIT, VRFY, EXPN, HELP (RFC 5321 §4.1.1.5–§4.1.1.10).
import { R, reply, type Reply } from '../../protocol/reply.js';
import type { Session } from '../session.js';

export function rset(s: Session, args: string): Reply {
  if (args !== '') return R.syntax;
  s.tx = null;
  return R.resetOk;
}

export function noop(): Reply {
  return R.noop;
}

export function quit(s: Session): Reply {
  return reply(221, '2.0.0', `${s.ctx.config.hostname} Bye`, true);
}

/** §3.5.3: a server that will not verify answers 252, not 502. */
export function vrfy(_s: Session, args: string): Reply {
  return args === '' ? R.syntax : R.vrfy;
}

export function expn(): Reply {
  return reply(502, '5.5.1', 'EXPN not available');
}

export function help(): Reply {
  return R.help;
}
