// BDAT (RFC 3030 CHUNKING): "BDAT size [LAST]". The chunk's bytes always follow the command,
// so they are read (and dropped when the command is refused) before the reply is sent, which
// keeps the session in sync. After a refused chunk the transaction is over (§2: the client
// must not send more chunks of it).
import { R, reply, type Reply } from '../../protocol/reply.js';
import type { Session } from '../session.js';

const ARGS = /^(\d{1,10})(?: +(LAST))? *$/i;

export function bdat(s: Session, args: string): Reply | null {
  const m = ARGS.exec(args);
  if (!m) return reply(501, '5.5.4', 'Syntax: BDAT size [LAST]');
  const size = Number(m[1]);
  const last = m[2] !== undefined;
  const tx = s.tx;
  let refuse: Reply | null = null;
  if (tx === null) refuse = R.needMail;
  else if (tx.mode === 'data') refuse = R.mixedData;
  else if (tx.recipients.length === 0) refuse = R.noValidRecipients;
  if (tx !== null && tx.mode === 'none') {
    tx.mode = 'bdat';
    s.bdat.begin();
  } else if (refuse !== null) {
    s.bdat.begin(); // read and drop into a fresh reader
  }
  s.bdat.chunk(size, last);
  s.bdatPending = { last, size, refuse };
  s.mode = 'bdat';
  return null;
}
