// DATA (RFC 5321 §4.1.1.4): after 354 the session feeds the DataScanner until CRLF.CRLF;
// the end of the message is handled by the session (commit.ts).
import { R, type Reply } from '../../protocol/reply.js';
import type { Session } from '../session.js';

export function data(s: Session, args: string): Reply {
  if (args !== '') return R.syntax;
  const tx = s.tx;
  if (tx === null) return R.needMail;
  if (tx.mode === 'bdat') return R.mixedData;
  if (tx.recipients.length === 0) return R.noValidRecipients;
  tx.mode = 'data';
  s.data.begin();
  s.mode = 'data';
  return R.startData;
}
