// Mail loop detection by hop count (RFC 5321 §6.3): every MTA that handles a message prepends a
// Received: field, so a message carrying more of them than any sane path needs is circling.
// countReceived() reads only the header section, line by line with indexOf (no string copy),
// and stops as soon as the count passes `limit`, so a hostile header costs at most its length.

const R = 0x52 | 0x20; // 'r'
const RECEIVED = Buffer.from('received', 'latin1');

/** Received: fields in the header section of `msg`, counting at most to limit + 1. */
export function countReceived(msg: Buffer, limit: number): number {
  let count = 0;
  let at = 0;
  while (at < msg.length) {
    const nl = msg.indexOf(0x0a, at);
    const end = nl < 0 ? msg.length : nl;
    const lineEnd = end > at && msg[end - 1] === 0x0d ? end - 1 : end;
    if (lineEnd === at) break; // the empty line that ends the header section
    if ((msg[at]! | 0x20) === R && lineEnd - at > RECEIVED.length && isReceived(msg, at, lineEnd)) {
      if (++count > limit) return count;
    }
    if (nl < 0) break;
    at = nl + 1;
  }
  return count;
}

/** "Received" case-insensitively, then optional blanks and ':' (RFC 5322 §3.6.7, obs-FWS allowed). */
function isReceived(msg: Buffer, start: number, end: number): boolean {
  for (let i = 0; i < RECEIVED.length; i++) if ((msg[start + i]! | 0x20) !== RECEIVED[i]) return false;
  let i = start + RECEIVED.length;
  while (i < end && (msg[i] === 0x20 || msg[i] === 0x09)) i++;
  return i < end && msg[i] === 0x3a;
}
