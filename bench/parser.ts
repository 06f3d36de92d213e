// Parser benchmark (RFC 5321 §4.1.1.4 DATA): MB/s through DataScanner for 10 KiB and 1 MiB
// messages in 64 KiB chunks, beside a naive per-byte state machine, indexOf of the terminator
// (the ceiling), the scan kernels we chose between, and LineScanner lines/s.
// Run: npx tsc -p tsconfig.test.json && node build/bench/parser.js. Knobs: BENCH_SIZE (bytes,
// comma-separated; 10240,1048576), BENCH_ITER (messages per run; ≈256 MiB worth), BENCH_RUNS (5).

import { DataScanner } from '../src/protocol/data-scanner.js';
import { dotStuff } from '../src/protocol/dot-stuff.js';
import { LineScanner } from '../src/protocol/line-scanner.js';

const CHUNK = 64 * 1024;
const SIZES = (process.env.BENCH_SIZE ?? '10240,1048576').split(',').map((s) => Number(s.trim()));
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

/** A body of 76-character base64-ish lines ending in CRLF; every 40th line starts with ".". */
function makeBody(size: number): Buffer {
  const alpha = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  for (let line = 0; pos < size; line++) {
    for (let j = 0; j < 76 && pos < size; j++) out[pos++] = alpha.charCodeAt((line * 7 + j * 13) % 64);
    if (line % 40 === 0) out[pos - Math.min(76, pos)] = DOT;
    if (pos < size) out[pos++] = CR;
    if (pos < size) out[pos++] = LF;
  }
  // end with CRLF
  out[size - 2] = CR;
  out[size - 1] = LF;
  return out;
}

/** The wire form (stuffed + terminator), split into chunks that each own an ArrayBuffer, as a socket's do. */
function wireChunks(body: Buffer): Buffer[] {
  const wire = Buffer.concat(dotStuff(body));
  const chunks: Buffer[] = [];
  for (let i = 0; i < wire.length; i += CHUNK) {
    const c = Buffer.allocUnsafeSlow(Math.min(CHUNK, wire.length - i));
    wire.copy(c, 0, i, i + c.length);
    chunks.push(c);
  }
  return chunks;
}

function wireBytes(chunks: Buffer[]): number {
  let n = 0;
  for (const c of chunks) n += c.length;
  return n;
}

/** Median MB/s (1 MB = 1e6 bytes) over RUNS timed runs of `iters` calls. */
function measure(bytesPerIter: number, iters: number, fn: () => number): number {
  let sink = 0;
  for (let i = 0; i < Math.min(iters, 50); i++) sink += fn(); // warm up
  const rates: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) sink += fn();
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    rates.push((bytesPerIter * iters) / s / 1e6);
  }
  if (sink === 0.5) console.log(sink); // keep the work alive
  rates.sort((a, b) => a - b);
  return rates[rates.length >> 1]!;
}

/**
 * Reference: a per-byte state machine with the same checks (bare CR/LF, line length, size,
 * unstuffing into views), the way a straightforward parser is written.
 */
class NaiveScanner {
  pieces: Buffer[] = [];
  size = 0;
  bad = false;
  #s = 2;
  #lineLen = 0;
  begin(): void {
    this.pieces = [];
    this.size = 0;
    this.bad = false;
    this.#s = 2;
    this.#lineLen = 0;
  }
  feed(buf: Buffer, from: number): number {
    let s = this.#s;
    let lineLen = this.#lineLen;
    let pieceStart = from;
    const n = buf.length;
    for (let i = from; i < n; i++) {
      const b = buf[i]!;
      if (s === 0 && b !== CR && b !== LF) {
        lineLen++; // the common case first: a text byte inside a line
        continue;
      }
      if (s === 3) {
        if (b === CR) {
          s = 4;
          continue;
        }
        s = 0; // stuffing dot dropped (pieceStart was moved past it)
      } else if (s === 4) {
        if (b === LF) {
          this.#push(buf, pieceStart, i - 2);
          return i + 1;
        }
        this.bad = true;
      }
      if (b === CR) {
        s = 1;
      } else if (b === LF) {
        if (s !== 1) this.bad = true;
        if (lineLen + 1 > 1000) this.bad = true;
        s = 2;
        lineLen = -1;
      } else if (b === DOT && s === 2) {
        this.#push(buf, pieceStart, i);
        pieceStart = i + 1;
        s = 3;
        lineLen = -1;
      } else {
        if (s === 1) this.bad = true;
        s = 0;
      }
      lineLen++;
    }
    this.#push(buf, pieceStart, s === 4 ? buf.length - 1 : buf.length);
    this.#s = s;
    this.#lineLen = lineLen;
    return -1;
  }
  #push(buf: Buffer, a: number, b: number): void {
    if (b > a) {
      this.pieces.push(buf.subarray(a, b));
      this.size += b - a;
    }
  }
}

const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');
const CRLF_DOT = Buffer.from('\r\n.', 'latin1');

function section(title: string): void {
  console.log(`\n${title}`);
}
function row(name: string, mbps: number, extra = ''): void {
  console.log(`  ${name.padEnd(52)} ${mbps.toFixed(0).padStart(6)} MB/s${extra}`);
}

console.log(`node ${process.version}, ${CHUNK / 1024} KiB chunks, median of ${RUNS} runs`);

for (const size of SIZES) {
  const body = makeBody(size);
  const chunks = wireChunks(body);
  const bytes = wireBytes(chunks);
  const iters = Number(process.env.BENCH_ITER ?? Math.max(1, Math.round((256 * 1024 * 1024) / bytes)));
  section(`DATA, ${size} byte body (${bytes} wire bytes, ${chunks.length} chunk(s)), ${iters} messages per run`);

  const ds = new DataScanner({ maxMessageBytes: 64 * 1024 * 1024 });
  const runScanner = (): number => {
    ds.begin();
    let end = -1;
    for (let i = 0; i < chunks.length && end < 0; i++) end = ds.feed(chunks[i]!, 0);
    if (end < 0 || ds.status !== 'ok' || ds.size !== size) throw new Error(`DataScanner: end=${end} status=${ds.status} size=${ds.size}`);
    return end;
  };
  row('DataScanner (scan + unstuff, views)', measure(bytes, iters, runScanner));
  row(
    'DataScanner + takeBody (the one copy)',
    measure(bytes, iters, () => {
      runScanner();
      return ds.takeBody().length;
    }),
  );

  const naive = new NaiveScanner();
  row(
    'naive per-byte state machine (same checks)',
    measure(bytes, iters, () => {
      naive.begin();
      let end = -1;
      for (let i = 0; i < chunks.length && end < 0; i++) end = naive.feed(chunks[i]!, 0);
      if (end < 0 || naive.bad || naive.size !== size) throw new Error('naive scanner disagrees');
      return end;
    }),
  );
  row(
    'indexOf("\\r\\n.\\r\\n") alone (ceiling)',
    measure(bytes, iters, () => {
      let n = 0;
      for (let i = 0; i < chunks.length; i++) n += chunks[i]!.indexOf(TERMINATOR, 0);
      return n;
    }),
  );
  row(
    'indexOf("\\r\\n.") hops, no checks (STYLE §5 design)',
    measure(bytes, iters, () => {
      let n = 0;
      for (let i = 0; i < chunks.length; i++) {
        const c = chunks[i]!;
        for (let p = c.indexOf(CRLF_DOT, 0); p >= 0; p = c.indexOf(CRLF_DOT, p + 3)) n++;
      }
      return n;
    }),
  );
}

// The kernels we chose between: a full pass over a 1 MiB body (76-char lines) finding every
// line end, with the check each one needs. See docs/parser.md.
{
  const body = makeBody(1 << 20);
  const n = body.length;
  const iters = 200;
  section('scan kernels over 1 MiB (every line end found and checked)');
  row(
    'per line indexOf(LF) + prev byte is CR (no bare-CR check)',
    measure(n, iters, () => {
      let c = 0;
      for (let p = 0, i = body.indexOf(LF, 0); i >= 0; p = i + 1, i = body.indexOf(LF, p)) if (body[i - 1] !== CR) c++;
      return c + 1;
    }),
  );
  row(
    'per line indexOf(LF) + indexOf(CR) (full check)',
    measure(n, iters, () => {
      let c = 0;
      for (let p = 0, i = body.indexOf(LF, 0); i >= 0; p = i + 1, i = body.indexOf(LF, p)) if (body.indexOf(CR, p) !== i - 1) c++;
      return c + 1;
    }),
  );
  const words = new Int32Array(body.buffer, 0, body.buffer.byteLength >>> 2);
  const w0 = (body.byteOffset + 3) >>> 2;
  const w1 = (body.byteOffset + n) >>> 2;
  row(
    'SWAR word test "byte < 0x0e" (3 ops; scan only)',
    measure(n, iters, () => {
      let c = 0;
      for (let i = w0; i < w1; i++) {
        const v = words[i]!;
        if (((v - 0x0e0e0e0e) & ~v & 0x80808080) !== 0) c++;
      }
      return c + 1;
    }),
  );
  row(
    'SWAR word test "byte == CR or LF" (8 ops; scan only)',
    measure(n, iters, () => {
      let c = 0;
      for (let i = w0; i < w1; i++) {
        const v = words[i]!;
        const a = v ^ 0x0d0d0d0d;
        const b = v ^ 0x0a0a0a0a;
        if ((((a - 0x01010101) & ~a) | ((b - 0x01010101) & ~b)) & 0x80808080) c++;
      }
      return c + 1;
    }),
  );
  row(
    'per-byte loop (CR/LF check only)',
    measure(n, iters, () => {
      let c = 0;
      for (let i = 0; i < n; i++) {
        const b = body[i]!;
        if (b === CR) {
          if (body[i + 1] !== LF) c += 2;
        } else if (b === LF && body[i - 1] !== CR) c += 2;
      }
      return c + 1;
    }),
  );
}

// LineScanner: a pipelined command stream in 64 KiB chunks.
{
  const cmds = ['MAIL FROM:<sender@example.com> SIZE=12345', 'RCPT TO:<rcpt1@example.org>', 'RCPT TO:<rcpt2@example.org>', 'NOOP', 'RSET'];
  const text = Buffer.from(Array.from({ length: 20000 }, (_, i) => cmds[i % cmds.length] + '\r\n').join(''), 'latin1');
  const chunks: Buffer[] = [];
  for (let i = 0; i < text.length; i += CHUNK) chunks.push(Buffer.from(text.subarray(i, i + CHUNK)));
  const ls = new LineScanner(4096);
  let lines = 0;
  const run = (): number => {
    lines = 0;
    for (const c of chunks) {
      let pos = 0;
      for (;;) {
        const k = ls.scan(c, pos);
        if (k === 'partial') break;
        if (k !== 'line') throw new Error(`LineScanner: ${k}`);
        lines++;
        pos = ls.end;
      }
    }
    return lines;
  };
  run();
  const total = lines;
  const mbps = measure(text.length, 100, run);
  section(`LineScanner, pipelined commands (${total} lines, ${(text.length / total).toFixed(1)} bytes/line, 64 KiB chunks)`);
  row('LineScanner.scan', mbps, `  = ${((mbps * 1e6 * total) / text.length / 1e6).toFixed(1)} M lines/s`);
}
