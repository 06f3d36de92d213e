// The raw message of an injection made ready for the queue: line ends normalised to CRLF
// (RFC 5322 §2.1; a bare CR or LF is not allowed on the wire, RFC 5321 §2.3.8), a final CRLF,
// and the Received: trace header (RFC 5321 §4.4) naming the HTTP client, as the SMTP path does.

const CR = 0x0d;
const LF = 0x0a;

/** True when every CR is followed by LF and every LF preceded by CR. */
function isCrlfClean(b: Buffer): boolean {
  for (let i = b.indexOf(LF); i !== -1; i = b.indexOf(LF, i + 1)) if (i === 0 || b[i - 1] !== CR) return false;
  for (let i = b.indexOf(CR); i !== -1; i = b.indexOf(CR, i + 1)) if (b[i + 1] !== LF) return false;
  return true;
}

/**
 * Bare LF, bare CR and CRLF all become CRLF, and the text ends with CRLF. The common case (a
 * client that already sends CRLF) is two indexOf scans and no copy; otherwise one pass into a
 * buffer sized for the worst case (every byte a bare line end).
 */
export function toCrlf(b: Buffer): Buffer {
  const endsOk = b.length >= 2 && b[b.length - 2] === CR && b[b.length - 1] === LF;
  if (isCrlfClean(b)) return endsOk ? b : Buffer.concat([b, Buffer.from('\r\n')]);
  const out = Buffer.allocUnsafe(b.length * 2 + 2);
  let o = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === CR) {
      out[o++] = CR;
      out[o++] = LF;
      if (b[i + 1] === LF) i++;
    } else if (c === LF) {
      out[o++] = CR;
      out[o++] = LF;
    } else {
      out[o++] = c;
    }
  }
  if (!(o >= 2 && out[o - 2] === CR && out[o - 1] === LF)) {
    out[o++] = CR;
    out[o++] = LF;
  }
  return out.subarray(0, o);
}

/** Any byte of 0x80 and up: the message needs 8BITMIME to be relayed as is. */
export function has8bit(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! > 0x7f) return true;
  return false;
}

export function httpReceivedHeader(i: { ip: string; hostname: string; id: string; recipient?: string | undefined; date?: Date }): Buffer {
  // The ip comes from the socket and the recipient passed isMailbox and the control-character
  // check, so neither can break the header; brackets make the IP an address literal.
  const forClause = i.recipient !== undefined ? `\r\n\tfor <${i.recipient}>` : '';
  const date = (i.date ?? new Date()).toUTCString().replace('GMT', '+0000');
  return Buffer.from(`Received: from api ([${i.ip}])\r\n\tby ${i.hostname} (postern) with HTTP id ${i.id}${forClause};\r\n\t${date}\r\n`, 'utf8');
}
