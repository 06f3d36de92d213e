// dotStuff: a stored body made ready to send after DATA (RFC 5321 §4.5.2 transparency: a line
// that starts with "." gets one more "."; §4.1.1.4: the data ends with CRLF "." CRLF). For the
// outbound client and the tests. Zero-copy: views of the body plus shared constant pieces.

const LF = 0x0a;
const CR = 0x0d;
const DOT = 0x2e;

/* Shared constants. Treat as read-only: every result array may hold these same objects. */
const DOT_PIECE = Buffer.from('.', 'latin1');
const END_AFTER_CRLF = Buffer.from('.\r\n', 'latin1');
const END_WITH_CRLF = Buffer.from('\r\n.\r\n', 'latin1');
const LF_DOT = Buffer.from('\n.', 'latin1');

/**
 * The body as views, with a "." piece before every line that starts with "." and the
 * terminator at the end (".\r\n", after an added "\r\n" if the body does not end with CRLF;
 * an empty body becomes just ".\r\n"). Lines are taken to start after any LF, not only after
 * CRLF, so that a stored bare LF cannot become a line a lenient server reads as the end.
 */
export function dotStuff(body: Buffer): Buffer[] {
  const n = body.length;
  if (n === 0) return [END_AFTER_CRLF];
  const out: Buffer[] = [];
  if (body[0] === DOT) out.push(DOT_PIECE);
  let start = 0;
  let at = body.indexOf(LF_DOT, 0);
  while (at >= 0) {
    out.push(body.subarray(start, at + 1), DOT_PIECE);
    start = at + 1; // the body's own dot starts the next view
    at = body.indexOf(LF_DOT, at + 2);
  }
  out.push(start === 0 ? body : body.subarray(start));
  out.push(n >= 2 && body[n - 2] === CR && body[n - 1] === LF ? END_AFTER_CRLF : END_WITH_CRLF);
  return out;
}
