// SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).
// Handlers return a Reply value; the session serialises it. Constant replies are built
// into Buffers once at load, so the hot path writes prebuilt bytes.

export interface Reply {
  readonly code: number;
  readonly enhanced: string;
  readonly lines: readonly string[];
  /** Close the connection after sending (421, 221, fatal errors). */
  readonly close?: boolean;
  /** Cached wire form; filled lazily for constant replies. */
  wire?: Buffer;
}

export function reply(code: number, enhanced: string, text: string | readonly string[], close = false): Reply {
  return { code, enhanced, lines: typeof text === 'string' ? [text] : text, close };
}

/** Wire form: "250-2.0.0 a\r\n250 2.0.0 b\r\n". The enhanced code goes on every line (RFC 2034 §4). */
export function encodeReply(r: Reply): Buffer {
  if (r.wire) return r.wire;
  const n = r.lines.length;
  let s = '';
  for (let i = 0; i < n; i++) {
    const text = r.lines[i]!.replace(/[\r\n]+/g, ' ');
    s += `${r.code}${i === n - 1 ? ' ' : '-'}${r.enhanced ? r.enhanced + ' ' : ''}${text}\r\n`;
  }
  return Buffer.from(s, 'utf8');
}

/** A reply whose bytes are computed once. */
function fixed(code: number, enhanced: string, text: string, close = false): Reply {
  const r: Reply = { code, enhanced, lines: [text], close };
  r.wire = encodeReply(r);
  return r;
}

export const R = {
  ok: fixed(250, '2.0.0', 'Ok'),
  senderOk: fixed(250, '2.1.0', 'Sender ok'),
  recipientOk: fixed(250, '2.1.5', 'Recipient ok'),
  resetOk: fixed(250, '2.0.0', 'Reset state'),
  noop: fixed(250, '2.0.0', 'Ok'),
  startData: fixed(354, '', 'End data with <CR><LF>.<CR><LF>'),
  vrfy: fixed(252, '2.5.2', 'Cannot VRFY user, but will accept message and attempt delivery'),
  help: reply(214, '2.0.0', ['Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH', 'See RFC 5321']),
  readyTls: fixed(220, '2.0.0', 'Ready to start TLS'),
  authOk: fixed(235, '2.7.0', 'Authentication successful'),

  unrecognized: fixed(500, '5.5.1', 'Command unrecognized'),
  badNewline: fixed(500, '5.5.2', 'Syntax error: bare CR or LF (only CRLF ends a line)'),
  lineTooLong: fixed(500, '5.5.6', 'Line too long'),
  syntax: fixed(501, '5.5.4', 'Syntax error in parameters or arguments'),
  notImplemented: fixed(502, '5.5.1', 'Command not implemented'),
  badSequence: fixed(503, '5.5.1', 'Bad sequence of commands'),
  needHelo: fixed(503, '5.5.1', 'Send EHLO or HELO first'),
  needMail: fixed(503, '5.5.1', 'Need MAIL command'),
  needRcpt: fixed(503, '5.5.1', 'Need RCPT command'),
  nestedMail: fixed(503, '5.5.1', 'Sender already specified'),
  mixedData: fixed(503, '5.5.1', 'DATA and BDAT cannot be mixed in one transaction'),
  alreadyAuth: fixed(503, '5.5.1', 'Already authenticated'),
  authInTransaction: fixed(503, '5.5.1', 'AUTH not allowed during a mail transaction'),
  alreadyTls: fixed(503, '5.5.1', 'TLS already active'),
  unknownMechanism: fixed(504, '5.5.4', 'Unrecognized authentication mechanism'),
  authFailed: fixed(535, '5.7.8', 'Authentication credentials invalid'),
  authBusy: fixed(454, '4.7.0', 'Temporary authentication failure, try again later'),
  authCancelled: fixed(501, '5.7.0', 'Authentication cancelled'),
  authBadBase64: fixed(501, '5.5.2', 'Cannot decode response (bad base64)'),
  encryptionRequired: fixed(538, '5.7.11', 'Encryption required for requested authentication mechanism'),
  tlsUnavailable: fixed(454, '4.7.0', 'TLS not available'),
  badParam: fixed(555, '5.5.4', 'MAIL FROM/RCPT TO parameters not recognized or not implemented'),
  badSender: fixed(501, '5.1.7', 'Bad sender address syntax'),
  badRecipient: fixed(501, '5.1.3', 'Bad recipient address syntax'),
  utf8NotDeclared: fixed(553, '5.6.7', 'Non-ASCII address requires the SMTPUTF8 parameter'),
  badUtf8Address: fixed(553, '5.6.7', 'Address or parameters are not valid UTF-8'),
  badUtf8: fixed(501, '5.5.2', 'Syntax error: the command is not valid UTF-8'),
  relayDenied: fixed(550, '5.7.1', 'Relay access denied'),
  routingLocalPart: fixed(553, '5.1.3', 'Routing characters in the local part (%, ! or a quoted @) are not accepted'),
  tooManyRecipients: fixed(452, '4.5.3', 'Too many recipients'),
  sizeExceeded: fixed(552, '5.3.4', 'Message size exceeds fixed maximum message size'),
  badNewlineData: fixed(554, '5.6.0', 'Message refused: bare CR or LF in the message (only CRLF ends a line)'),
  dataLineTooLong: fixed(554, '5.6.0', 'Message refused: a text line is longer than 998 octets'),
  nulInData: fixed(554, '5.6.0', 'Message refused: a NUL octet in the message'),
  queueFailed: fixed(452, '4.3.1', 'Insufficient system storage, try again later'),
  noValidRecipients: fixed(554, '5.5.1', 'No valid recipients'),
} as const;

export function closing(code: number, enhanced: string, text: string): Reply {
  return reply(code, enhanced, text, true);
}
