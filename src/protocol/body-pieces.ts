// The body of a message being received (DATA or BDAT), kept as views of the socket's chunks and
// copied once, into one exact-size Buffer, by take(). Used by DataScanner and BdatReader.
// RFC 5321 §4.5.3.1.7 (message size) is enforced by the scanners; this only holds bytes.

/**
 * Pieces shorter than this are copied into a slab instead of kept as views.
 *
 * Why copy at all: a view costs a JS object (≈100 bytes of heap) whatever its length. A client
 * that sends one byte per TCP segment, or a body made of "..\r\n" lines, would otherwise make
 * one object per byte or two, i.e. ~100x maxMessageBytes of heap. Copying the short pieces into
 * a slab bounds the number of objects: views are ≥ SMALL_PIECE_BYTES and slab runs lie between
 * them or fill a slab, so pieces ≤ 2·size/SMALL_PIECE_BYTES + size/(SLAB_BYTES − 256) + 2, at the
 * cost of a second copy of those few bytes. Normal traffic (kilobyte-sized socket chunks, a stuffed dot
 * every few dozen lines) keeps nearly every byte in views.
 */
export const SMALL_PIECE_BYTES = 256;
/** Size of each slab that short pieces are copied into. */
const SLAB_BYTES = 8192;

export class BodyPieces {
  #list: Buffer[] = [];
  #bytes = 0;
  #slab: Buffer | null = null;
  #slabPos = 0;
  /** Start in #slab of the open run: short pieces copied back to back, shown as one view. */
  #runStart = -1;
  /** The open run's view is already the last element of #list (refreshed when it grows). */
  #runListed = false;

  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * The pieces, in order: views of the input (or of a slab, for short pieces). Reading this
   * does not end the open run, so reading it often does not multiply the pieces.
   */
  get list(): Buffer[] {
    if (this.#runStart >= 0) this.#showRun();
    return this.#list;
  }

  /** Add buf[start, end) as a view (or, if short, as a copy into the slab). */
  push(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    if (n <= 0) return;
    this.#bytes += n;
    if (n >= SMALL_PIECE_BYTES) {
      this.#closeRun();
      this.#list.push(buf.subarray(start, end));
      return;
    }
    let slab = this.#slab;
    if (slab === null || this.#slabPos + n > slab.length) {
      this.#closeRun();
      slab = this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.#slabPos = 0;
    }
    if (this.#runStart < 0) this.#runStart = this.#slabPos;
    buf.copy(slab, this.#slabPos, start, end);
    this.#slabPos += n;
  }

  /** Drop everything (a new array: a caller may still hold the old one). */
  clear(): void {
    this.#list = [];
    this.#bytes = 0;
    this.#slab = null;
    this.#slabPos = 0;
    this.#runStart = -1;
    this.#runListed = false;
  }

  /**
   * The one copy: `prefix` then every piece, in a Buffer of exactly that size, then clear().
   * allocUnsafeSlow, not allocUnsafe: the result owns its whole ArrayBuffer (byteOffset 0), so
   * it can be transferred to a worker (STYLE §6); a pooled Buffer would be silently cloned.
   */
  take(prefix?: Buffer): Buffer {
    const list = this.list;
    const head = prefix === undefined ? 0 : prefix.length;
    const out = Buffer.allocUnsafeSlow(head + this.#bytes);
    if (prefix !== undefined) out.set(prefix, 0);
    let pos = head;
    for (let i = 0; i < list.length; i++) {
      const piece = list[i]!;
      out.set(piece, pos);
      pos += piece.length;
    }
    this.clear();
    return out;
  }

  /** Put the open run's current view at the end of #list (replacing its older, shorter view). */
  #showRun(): void {
    const view = this.#slab!.subarray(this.#runStart, this.#slabPos);
    if (this.#runListed) this.#list[this.#list.length - 1] = view;
    else this.#list.push(view);
    this.#runListed = true;
  }

  #closeRun(): void {
    if (this.#runStart >= 0) {
      this.#showRun();
      this.#runStart = -1;
      this.#runListed = false;
    }
  }
}
