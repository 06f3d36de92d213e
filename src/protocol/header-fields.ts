// The header section of a message as bytes (RFC 5322 §2.2): where each field ends, whether a
// field has a given name, and a copy without some fields. Shared by the removal of forged
// Authentication-Results fields and of X-Postern-Pool; copies only when a field goes.

const LF = 0x0a;
const CR = 0x0d;

/** A field's [start, end) in the message. */
export type FieldRange = readonly [number, number];

/**
 * Call `visit(start, end)` for each field of the header section that starts at `from` (bytes
 * before it, our own trace field, are not looked at). The section ends at the first empty line;
 * a line that looks like a field in the body is body text.
 */
export function forEachField(msg: Buffer, from: number, visit: (start: number, end: number) => void): void {
  let pos = from;
  while (pos < msg.length) {
    const c = msg[pos]!;
    if (c === CR || c === LF) return; // the empty line: end of the header section
    const end = fieldEnd(msg, pos);
    visit(pos, end);
    pos = end;
  }
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

/**
 * The offset of the ':' when the field at `pos` (ending at `end`) is named `lowerName` in any
 * case, then optional WSP (RFC 5322 §4.5.3 obs-optional); else -1.
 */
export function fieldColon(msg: Buffer, pos: number, end: number, lowerName: string): number {
  if (end - pos <= lowerName.length) return -1;
  for (let i = 0; i < lowerName.length; i++) {
    const c = msg[pos + i]!;
    if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== lowerName.charCodeAt(i)) return -1;
  }
  let i = pos + lowerName.length;
  while (i < end && (msg[i] === 0x20 || msg[i] === 0x09)) i++;
  return msg[i] === 0x3a ? i : -1;
}

/** `msg` without the ranges in `drop` (ascending, not overlapping), in a buffer of its own. */
export function withoutFields(msg: Buffer, drop: readonly FieldRange[]): Buffer {
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
  return out;
}
