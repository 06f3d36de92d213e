// The TLS-Required header field (RFC 8689 §3): "TLS-Required: No" asks that the message be
// delivered even where a recipient's TLS policy (MTA-STS, DANE) would stop it. Only the value
// "No" is defined; any other value, or a field spread over a folded line, is no request.
import { fieldColon, forEachField } from './header-fields.js';

/** Fields looked at before giving up: a hostile header section may hold thousands. */
const MAX_FIELDS = 1000;

/** Does the header section of `msg` hold a "TLS-Required: No" field? */
export function hasTlsRequiredNo(msg: Buffer): boolean {
  let found = false;
  let seen = 0;
  forEachField(msg, 0, (start, end) => {
    if (found || ++seen > MAX_FIELDS) return;
    const colon = fieldColon(msg, start, end, 'tls-required');
    if (colon < 0) return;
    const value = msg.toString('latin1', colon + 1, end).replace(/\r?\n$/, '').trim();
    if (value.toLowerCase() === 'no') found = true;
  });
  return found;
}
