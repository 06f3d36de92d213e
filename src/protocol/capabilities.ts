// The EHLO/LHLO reply read as capabilities (RFC 5321 §4.1.1.1, RFC 1869 §4.3): the outbound
// twin of the capability list smtp/commands/helo.ts writes. Only the extensions the delivery
// client uses are recognised: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152),
// SMTPUTF8 (RFC 6531), CHUNKING and BINARYMIME (RFC 3030), STARTTLS (RFC 3207), DSN
// (RFC 3461), ENHANCEDSTATUSCODES (RFC 2034). Pure, no I/O.

export interface Capabilities {
  esmtp: boolean;
  pipelining: boolean;
  /** SIZE limit; 0 = offered without a limit; undefined = not offered. */
  size?: number;
  eightBitMime: boolean;
  smtputf8: boolean;
  chunking: boolean;
  binaryMime: boolean;
  starttls: boolean;
  dsn: boolean;
  /** RFC 8689. */
  requireTls: boolean;
  enhancedStatusCodes: boolean;
}

/** No extension at all (a HELO session, or before EHLO). */
export function noCapabilities(): Capabilities {
  return { esmtp: false, pipelining: false, eightBitMime: false, smtputf8: false, chunking: false, binaryMime: false, starttls: false, dsn: false, enhancedStatusCodes: false, requireTls: false };
}

/** EHLO/LHLO reply lines (texts without the code): the first line is the greeting name. */
export function parseCapabilities(lines: readonly string[]): Capabilities {
  const c = noCapabilities();
  c.esmtp = true;
  for (const l of lines.slice(1)) {
    const [kw, ...args] = l.trim().split(/\s+/);
    switch (kw?.toUpperCase()) {
      case 'PIPELINING': c.pipelining = true; break;
      case 'SIZE': {
        const n = Number(args[0] ?? '0');
        c.size = Number.isFinite(n) && n >= 0 ? n : 0;
        break;
      }
      case '8BITMIME': c.eightBitMime = true; break;
      case 'SMTPUTF8': c.smtputf8 = true; break;
      case 'CHUNKING': c.chunking = true; break;
      case 'BINARYMIME': c.binaryMime = true; break;
      case 'STARTTLS': c.starttls = true; break;
      case 'DSN': c.dsn = true; break;
      case 'REQUIRETLS': c.requireTls = true; break;
      case 'ENHANCEDSTATUSCODES': c.enhancedStatusCodes = true; break;
    }
  }
  return c;
}
