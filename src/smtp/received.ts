// The Received: trace header prepended to every accepted message (RFC 5321 §4.4), with the
// protocol keyword of RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA, and the UTF8 forms of
// RFC 6531) and comments naming the TLS version/cipher and the authenticated user.

export interface ReceivedInfo {
  helo: string;
  ip: string;
  hostname: string;
  esmtp: boolean;
  tls?: { version: string; cipher: string } | undefined;
  authUser?: string | undefined;
  utf8: boolean;
  id: string;
  recipient?: string | undefined;
  date?: Date;
}

/** Text from the client goes into a comment or atom: keep printable ASCII, no parentheses. */
function clean(s: string): string {
  return s.replace(/[^\x21-\x7e]|[()\\]/g, '?').slice(0, 255);
}

let cachedSecond = -1;
let cachedDate = '';

/** RFC 5322 date-time, cached per second. */
export function rfc5322Date(d: Date = new Date()): string {
  const sec = Math.floor(d.getTime() / 1000);
  if (sec !== cachedSecond) {
    cachedSecond = sec;
    cachedDate = d.toUTCString().replace('GMT', '+0000');
  }
  return cachedDate;
}

export function protocolKeyword(i: Pick<ReceivedInfo, 'esmtp' | 'tls' | 'authUser' | 'utf8'>): string {
  if (!i.esmtp) return 'SMTP';
  return (i.utf8 ? 'UTF8SMTP' : 'ESMTP') + (i.tls ? 'S' : '') + (i.authUser !== undefined ? 'A' : '');
}

export function receivedHeader(i: ReceivedInfo): Buffer {
  const notes: string[] = [];
  if (i.tls) notes.push(`using ${clean(i.tls.version)} with cipher ${clean(i.tls.cipher)}`);
  if (i.authUser !== undefined) notes.push(`authenticated as ${clean(i.authUser)}`);
  const extra = notes.length > 0 ? `\r\n\t(${notes.join('; ')})` : '';
  const forClause = i.recipient !== undefined ? `\r\n\tfor <${clean(i.recipient)}>` : '';
  const date = i.date ? i.date.toUTCString().replace('GMT', '+0000') : rfc5322Date();
  return Buffer.from(
    `Received: from ${clean(i.helo) || 'unknown'} ([${clean(i.ip)}])${extra}\r\n\tby ${i.hostname} (postern) with ${protocolKeyword(i)} id ${i.id}${forClause};\r\n\t${date}\r\n`,
    'utf8',
  );
}
