// The EHLO/LHLO reply read as capabilities (RFC 5321 §4.1.1.1, RFC 1869 §4.3): the outbound
// twin of the capability list smtp/commands/helo.ts writes. Only the extensions the delivery
// client uses are recognised: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME (RFC 6152),
// SMTPUTF8 (RFC 6531), CHUNKING and BINARYMIME (RFC 3030), STARTTLS (RFC 3207), DSN
// (RFC 3461), ENHANCEDSTATUSCODES (RFC 2034), AUTH (RFC 4954, and the old "AUTH=" form some
// servers still send). Pure, no I/O.

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
  /** SASL mechanisms offered, upper case (at most MAX_AUTH_MECHANISMS); [] = no AUTH. */
  auth: string[];
}

/** A hostile EHLO reply may list thousands: the client only ever looks for PLAIN and LOGIN. */
const MAX_AUTH_MECHANISMS = 16;

/** No extension at all (a HELO session, or before EHLO). */
export function noCapabilities(): Capabilities {
  return { esmtp: false, pipelining: false, eightBitMime: false, smtputf8: false, chunking: false, binaryMime: false, starttls: false, dsn: false, enhancedStatusCodes: false, requireTls: false, auth: [] };
}

/** EHLO/LHLO reply lines (texts without the code): the first line is the greeting name. */
export function parseCapabilities(lines: readonly string[]): Capabilities {
  const c = noCapabilities();
  c.esmtp = true;
  for (const l of lines.slice(1)) {
    const [word, ...args] = l.trim().split(/\s+/);
    let kw = word?.toUpperCase();
    if (kw?.startsWith('AUTH=')) {
      args.unshift(kw.slice(5));
      kw = 'AUTH';
    }
    switch (kw) {
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
      case 'AUTH':
        for (const m of args) {
          const mech = m.toUpperCase();
          // RFC 4422 §3.1 mechanism names: 1-20 of A-Z, 0-9, "-" and "_".
          if (c.auth.length < MAX_AUTH_MECHANISMS && /^[A-Z0-9_-]{1,20}$/.test(mech) && !c.auth.includes(mech)) c.auth.push(mech);
        }
        break;
    }
  }
  return c;
}
