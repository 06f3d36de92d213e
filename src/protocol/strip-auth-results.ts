// Removal of forged Authentication-Results fields (RFC 8601 §5): an MTA MUST delete an
// incoming field that claims our authserv-id unless it came from a trusted MTA, or a filter
// or mailbox downstream that believes our id would believe the sender's own "pass".
// Works on the header section of one message as bytes; copies only when a field goes.

const LF = 0x0a;
const CR = 0x0d;
const NAME = 'authentication-results';

export interface StripResult {
  /** The message without the forged fields (the input itself when none was found). */
  readonly body: Buffer;
  /** How many fields were removed. */
  readonly removed: number;
}

/**
 * Remove every Authentication-Results field of the header section starting at `from` whose
 * authserv-id equals `authservId` (case-insensitive). Bytes before `from` (our own trace
 * field) are kept as they are. The header section ends at the first empty line.
 */
export function stripAuthResults(msg: Buffer, from: number, authservId: string): StripResult {
  const want = authservId.toLowerCase();
  let drop: Array<[number, number]> | null = null;
  let pos = from;
  while (pos < msg.length) {
    const first = msg[pos]!;
    if (first === CR || first === LF) break; // the empty line: end of the header section
    const eol = fieldEnd(msg, pos);
    if ((first | 0x20) === 0x61 /* a */ && isAuthResults(msg, pos, eol)) {
      const id = authservIdOf(msg.toString('latin1', pos, eol));
      if (id !== null && id.toLowerCase() === want) (drop ??= []).push([pos, eol]);
    }
    pos = eol;
  }
  if (drop === null) return { body: msg, removed: 0 };
  let size = msg.length;
  for (const [a, b] of drop) size -= b - a;
  // Owns its whole ArrayBuffer, like the scanners' bodies, so it can still be transferred to a worker.
  const out = Buffer.allocUnsafeSlow(size);
  let at = 0;
  let copied = 0;
  for (const [a, b] of drop) {
    at += msg.copy(out, at, copied, a);
    copied = b;
  }
  msg.copy(out, at, copied);
  return { body: out, removed: drop.length };
}

/** Just after the field that starts at `pos`: its first line and every continuation line. */
function fieldEnd(msg: Buffer, pos: number): number {
  for (;;) {
    const lf = msg.indexOf(LF, pos);
    if (lf < 0) return msg.length;
    pos = lf + 1;
    const next = msg[pos];
    if (next !== 0x20 && next !== 0x09) return pos;
  }
}

/** "Authentication-Results" in any case, then optional WSP (RFC 5322 §4.5.3 obs-optional), then ':'. */
function isAuthResults(msg: Buffer, pos: number, end: number): boolean {
  if (end - pos <= NAME.length) return false;
  for (let i = 0; i < NAME.length; i++) {
    const c = msg[pos + i]!;
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== NAME.charCodeAt(i)) return false;
  }
  let i = pos + NAME.length;
  while (i < end && (msg[i] === 0x20 || msg[i] === 0x09)) i++;
  return msg[i] === 0x3a;
}

/** The authserv-id of a whole Authentication-Results field (RFC 8601 §2.2), or null if there is none. */
export function authservIdOf(field: string): string | null {
  const s = field.slice(field.indexOf(':') + 1);
  let i = 0;
  // CFWS: folding white space and (possibly nested) comments with quoted-pairs.
  for (;;) {
    while (i < s.length && /[ \t\r\n]/.test(s[i]!)) i++;
    if (s[i] !== '(') break;
    let depth = 0;
    for (; i < s.length; i++) {
      const c = s[i];
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')' && --depth === 0) { i++; break; }
    }
    if (depth !== 0) return null;
  }
  if (s[i] === '"') {
    let out = '';
    for (i++; i < s.length; i++) {
      const c = s[i]!;
      if (c === '"') return out;
      if (c === '\\') {
        i++;
        out += s[i] ?? '';
      } else if (c !== '\r' && c !== '\n') out += c;
    }
    return null;
  }
  // A token (RFC 2045 §5.1): up to white space, ';', a comment or any other tspecial.
  const m = /^[^\s;()<>@,:\\"/[\]?=]+/.exec(s.slice(i));
  return m === null ? null : m[0];
}
