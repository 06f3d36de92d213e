// Removal of forged Authentication-Results fields (RFC 8601 §5): an MTA MUST delete an
// incoming field that claims our authserv-id unless it came from a trusted MTA, or a filter
// or mailbox downstream that believes our id would believe the sender's own "pass".
// Works on the header section of one message as bytes; copies only when a field goes.

import { fieldColon, forEachField, withoutFields } from './header-fields.js';

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
  forEachField(msg, from, (pos, end) => {
    if ((msg[pos]! | 0x20) !== 0x61 /* a */ || fieldColon(msg, pos, end, NAME) < 0) return;
    const id = authservIdOf(msg.toString('latin1', pos, end));
    if (id !== null && id.toLowerCase() === want) (drop ??= []).push([pos, end]);
  });
  if (drop === null) return { body: msg, removed: 0 };
  return { body: withoutFields(msg, drop), removed: (drop as Array<[number, number]>).length };
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
