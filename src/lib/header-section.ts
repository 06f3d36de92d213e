// The header section of a stored message (RFC 5322 §2.1: the lines up to the first empty
// line) and its fields, for the views that show them (`postern queue show`, the HTTP API's
// headers endpoint, the dashboard's message page). Bounded: a hostile message may carry one
// endless header, and only the first MAX_HEADER_BYTES of the section are ever copied.

/** Header bytes kept at most: enough for any real header section, bounded for a hostile one. */
export const MAX_HEADER_BYTES = 256 * 1024;

export interface HeaderSection {
  /** A copy of the section (its final CRLF included), cut at MAX_HEADER_BYTES. */
  bytes: Buffer;
  /** The section was longer than MAX_HEADER_BYTES (or had no end before it). */
  truncated: boolean;
}

/** A copy of the header section of `body` (which may be a reused view: nothing of it is kept). */
export function headerSection(body: Buffer): HeaderSection {
  // Searching past the bound is pointless: what follows it is cut anyway.
  const end = body.subarray(0, MAX_HEADER_BYTES + 4).indexOf('\r\n\r\n');
  const n = end < 0 ? body.length : end + 2;
  return { bytes: Buffer.from(body.subarray(0, Math.min(n, MAX_HEADER_BYTES))), truncated: n > MAX_HEADER_BYTES || (end < 0 && body.length > MAX_HEADER_BYTES) };
}

export interface HeaderField {
  /** As written (case kept); '' for a line that has no colon (a malformed header). */
  name: string;
  /** Unfolded (RFC 5322 §2.2.3: CRLF before white space removed), not decoded: RFC 2047 words stay as they are. */
  value: string;
}

/**
 * The fields of a header section, in order, as UTF-8 (a byte that is not becomes U+FFFD). A
 * line starting with white space continues the field before it; a bare LF also ends a line.
 */
export function headerFields(section: Buffer): HeaderField[] {
  const out: HeaderField[] = [];
  for (const line of section.toString('utf8').split(/\r?\n/)) {
    if (line === '') continue;
    const last = out[out.length - 1];
    if ((line[0] === ' ' || line[0] === '\t') && last !== undefined) {
      last.value += line;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) out.push({ name: '', value: line });
    else out.push({ name: line.slice(0, colon).trimEnd(), value: line.slice(colon + 1).trim() });
  }
  return out;
}
