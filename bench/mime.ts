// `npm run bench:mime`: postern's message extractor (src/filter/spam/extract.ts) against the
// well-kept JavaScript MIME parsers, on the same messages, in one process.
//
//   postern extract()          extract(buf): headers unfolded and RFC 2047-decoded, MIME walk,
//                              base64 / QP, charsets, HTML reduced to text (what the spam
//                              classifier reads). Synchronous; it never throws.
//   postal-mime                PostalMime.parse(buf) (postal-mime 4). Async: awaited one message
//                              at a time. Returns text and html as given (no HTML to text), so
//                              it does less than extract() on HTML-only mail.
//   mailparser                 simpleParser(buf) (mailparser 3), default options: it also turns
//                              text into linkified HTML (textAsHtml) and cid: images into data URIs
//   mailparser, lean           simpleParser(buf, { skipTextToHtml, skipTextLinks, skipImageLinks }):
//                              without that extra work, HTML to text kept (extract() does it too)
//   classifier features        features(buf): extract() + tokenize + hash, all of SpamModel.score
//                              but the (sparse, cheap) dot product; for context, not a parser
//
// Every measured call goes over the whole corpus, one message after another. ROUNDS rounds,
// each running every entry in turn (the starting entry rotates each round); the median round
// is reported. Before the rounds each entry runs over WARMUP messages (JIT, lazy imports).
// Per entry: messages/s, MB/s (MB = 10^6 bytes of raw message), µs per message (wall), process
// CPU µs per message (less sensitive to other load on the machine, GC threads included), the
// msg/s of every round, and how many messages threw (a throw counts as no text).
// A rough equivalence check, so a fast parser that drops content shows: the share of messages
// for which a parser gave non-empty text (text or html), how many messages only postern or
// only the library found text in, and the share whose decoded Subject equals postern's
// (whitespace runs collapsed). Prints a markdown table and the time ratios.
//
// Corpus: the test messages of the SpamAssassin split (default /tmp/spam-eval, made by
// the spam evaluation kit's split.mjs --seed 1): every file under test/spam and test/ham, interleaved.
// When absent, a few synthetic MIME messages (printed as a note).
//
// Knobs (environment):
//   BENCH_ROUNDS  rounds (3)
//   BENCH_SPLIT   split folder (/tmp/spam-eval)
// Run: npm run bench:mime
//   (= npx tsc -p tsconfig.json && npx tsc -p tsconfig.test.json && node build/bench/mime.js)
import { cpus } from 'node:os';
import { pathToFileURL } from 'node:url';
import PostalMime from 'postal-mime';
import { simpleParser, type SimpleParserOptions } from 'mailparser';
import { extract } from '../src/filter/spam/extract.js';
import { features } from '../src/filter/spam/features.js';
import { DEFAULTS } from '../src/filter/spam/train-options.js';
import { haveSplit, interleavedTest } from './lib/split.js';

export interface MimeBenchOptions {
  /** Rounds over the whole corpus per entry; the median is reported. */
  rounds: number;
  split: string;
  corpus: 'auto' | 'split' | 'synthetic';
  /** At most this many messages (the first of the interleaved corpus). */
  messages: number;
  /** Messages run through each entry before the rounds. */
  warmup: number;
  log: (line: string) => void;
}

export interface EntryResult {
  name: string;
  /** A MIME parser (compared) or context only (the classifier's features). */
  kind: 'parser' | 'context';
  messages: number;
  bytes: number;
  /** Median round, seconds. */
  seconds: number;
  msgPerS: number;
  mbPerS: number;
  usPerMsg: number;
  cpuUsPerMsg: number;
  /** msg/s of every round, in order. */
  roundMsgPerS: number[];
  /** Messages that threw (in the first round; the input is the same every round). */
  threw: number;
  /** Messages processed in every round (threw included): should equal `messages`. */
  processed: number;
  /** Parsers: messages with non-empty text or html. */
  nonEmpty: number;
  /** Parsers: messages where postern found text and this parser none, and the reverse. */
  posternOnly: number;
  otherOnly: number;
  /** Parsers: messages whose decoded Subject (whitespace collapsed) equals postern's. */
  sameSubject: number;
}

export interface MimeBenchResult {
  corpus: { kind: 'split' | 'synthetic'; messages: number; spam: number; ham: number; MB: number };
  rounds: number;
  entries: EntryResult[];
}

export const DEFAULT_OPTIONS: MimeBenchOptions = {
  rounds: 3,
  split: '/tmp/spam-eval',
  corpus: 'auto',
  messages: Number.MAX_SAFE_INTEGER,
  warmup: 200,
  log: (l) => process.stderr.write(l + '\n'),
};

// ---- corpus ------------------------------------------------------------------------------------

/**
 * Synthetic MIME messages (deterministic): plain text, folded headers with RFC 2047 words (B and
 * Q, UTF-8 and latin1), multipart/alternative with QP text and base64 HTML, an attachment, a
 * nested message/rfc822, an HTML-only latin1 message.
 */
export function synthMime(n: number): Buffer[] {
  const b64 = (s: string, cs: BufferEncoding = 'utf8'): string => Buffer.from(s, cs).toString('base64').replace(/.{76}/g, '$&\r\n');
  const words = ['meeting', 'patch', 'review', 'offer', 'winner', 'release', 'tuesday', 'thanks', 'agenda', 'prize', 'café', 'naïve'];
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const w = (k: number): string => Array.from({ length: k }, (_, j) => words[(i * 7 + j * 3) % words.length]!).join(' ');
    const head = `From: =?UTF-8?B?${b64(`Zoë ${i}`)}?= <sender${i}@example.org>\r\nTo: rcpt@example.net\r\nDate: Mon, 1 Jan 2001 00:00:00 +0000\r\nMessage-ID: <synth${i}@example.org>\r\nMIME-Version: 1.0\r\n`;
    const subject = `Subject: =?UTF-8?Q?R=C3=A9union_${i}?=\r\n =?ISO-8859-1?Q?_caf=E9?= and\r\n\tmore ${w(2).replace(/é/g, 'e').replace(/ï/g, 'i')}\r\n`; // raw header bytes ASCII: postern reads them as latin1
    let msg: string;
    switch (i % 5) {
      case 0:
        msg = `${head}${subject}Content-Type: text/plain; charset=us-ascii\r\n\r\n${w(40)}\r\n${w(30)}\r\n`;
        break;
      case 1:
        msg = `${head}${subject}Content-Type: multipart/alternative;\r\n boundary="alt${i}"\r\n\r\npreamble\r\n--alt${i}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n${w(30).replace(/é/g, '=C3=A9').replace(/ï/g, '=C3=AF')} =\r\nsoft break\r\n--alt${i}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64(`<html><body><p>${w(30)}</p><a href="http://promo${i}.example/x">click</a><img src="http://img.example/a.png"></body></html>`)}\r\n--alt${i}--\r\n`;
        break;
      case 2:
        msg = `${head}${subject}Content-Type: multipart/mixed; boundary=mix${i}\r\n\r\n--mix${i}\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n${w(40)}\r\n--mix${i}\r\nContent-Type: application/octet-stream; name="data${i}.bin"\r\nContent-Disposition: attachment; filename="data${i}.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64('x'.repeat(600 + i))}\r\n--mix${i}--\r\n`;
        // the latin1 part really is latin1 (é, ï as one byte each)
        out.push(Buffer.from(msg, 'latin1'));
        continue;
      case 3:
        msg = `${head}${subject}Content-Type: multipart/mixed; boundary="outer${i}"\r\n\r\n--outer${i}\r\nContent-Type: text/plain\r\n\r\nforwarded below\r\n--outer${i}\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.com\r\nSubject: inner ${w(2)}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${w(25)}\r\n--outer${i}--\r\n`;
        break;
      default:
        msg = `${head}${subject}Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><head><style>p{color:red}</style></head><body><p>${w(35).replace(/é/g, '=E9').replace(/ï/g, '=EF')}</p>\r\n<a href=3D"http://www.offer${i}.example/">here</a> &amp; &eacute;</body></html>\r\n`;
    }
    out.push(Buffer.from(msg, 'utf8'));
  }
  return out;
}

interface Corpus { kind: 'split' | 'synthetic'; messages: Buffer[]; spam: number; ham: number }

function loadCorpus(o: MimeBenchOptions): Corpus {
  const found = haveSplit(o.split, 'test/spam', 'test/ham');
  if (o.corpus === 'split' && !found) throw new Error(`no split in ${o.split} (make it with the spam evaluation kit: node split.mjs --seed 1)`);
  if (o.corpus !== 'synthetic' && found) return { kind: 'split', ...interleavedTest(o.split, o.messages) };
  if (o.corpus === 'auto') o.log(`note: no split in ${o.split}: using ${Math.min(o.messages, 50)} synthetic MIME messages instead of the SpamAssassin test set`);
  return { kind: 'synthetic', messages: synthMime(Math.min(o.messages, 50)), spam: 0, ham: 0 };
}

// ---- the entries -------------------------------------------------------------------------------

/** What the equivalence check keeps of one parse: text found, decoded Subject (null: none / threw). */
interface Seen { text: boolean; subject: string | null }

interface Entry {
  name: string;
  kind: 'parser' | 'context';
  sync?: (b: Buffer) => Seen;
  async?: (b: Buffer) => Promise<Seen>;
}

const some = (xs: string[]): boolean => xs.some((s) => s.trim() !== '');
const filled = (s: unknown): boolean => typeof s === 'string' && s.trim() !== '';
const NONE: Seen = { text: false, subject: null };

const LEAN: SimpleParserOptions = { skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true };

export const ENTRIES: Entry[] = [
  {
    name: 'postern extract()',
    kind: 'parser',
    sync: (b) => {
      const e = extract(b);
      let subject: string | null = null;
      for (const [k, v] of e.headers) if (k === 'subject') { subject = v; break; }
      return { text: some(e.text) || some(e.html), subject };
    },
  },
  {
    name: 'postal-mime 4',
    kind: 'parser',
    async: async (b) => {
      const m = await PostalMime.parse(b);
      return { text: filled(m.text) || filled(m.html), subject: m.subject ?? null };
    },
  },
  {
    name: 'mailparser 3 simpleParser',
    kind: 'parser',
    async: async (b) => {
      const m = await simpleParser(b);
      return { text: filled(m.text) || filled(m.html), subject: m.subject ?? null };
    },
  },
  {
    name: 'mailparser 3 simpleParser, lean',
    kind: 'parser',
    async: async (b) => {
      const m = await simpleParser(b, LEAN);
      return { text: filled(m.text) || filled(m.html), subject: m.subject ?? null };
    },
  },
  {
    name: 'classifier features (extract + tokenize + hash)',
    kind: 'context',
    sync: (b) => {
      const x = features(b, DEFAULTS.bits, { bigrams: DEFAULTS.bigrams });
      return { text: x.length > 0, subject: null };
    },
  },
];

interface Round { seconds: number; cpuUs: number; threw: number; processed: number; seen: Seen[] }

async function pass(e: Entry, msgs: Buffer[], count: number, keep: boolean): Promise<Round> {
  const seen: Seen[] = keep ? new Array<Seen>(count) : [];
  let threw = 0, processed = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  if (e.sync) {
    const f = e.sync;
    for (let i = 0; i < count; i++) {
      let s: Seen;
      try { s = f(msgs[i % msgs.length]!); } catch { s = NONE; threw++; }
      if (keep) seen[i] = s;
      processed++;
    }
  } else {
    const f = e.async!;
    for (let i = 0; i < count; i++) {
      let s: Seen;
      try { s = await f(msgs[i % msgs.length]!); } catch { s = NONE; threw++; }
      if (keep) seen[i] = s;
      processed++;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { seconds, cpuUs: cpu.user + cpu.system, threw, processed, seen };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const norm = (s: string | null): string | null => (s === null ? null : s.replace(/\s+/g, ' ').trim());

// ---- the bench ---------------------------------------------------------------------------------

export async function runMimeBench(opts: Partial<MimeBenchOptions> = {}): Promise<MimeBenchResult> {
  const o: MimeBenchOptions = { ...DEFAULT_OPTIONS, ...opts };
  if (!(o.rounds >= 1)) throw new Error(`rounds must be >= 1 (got ${o.rounds})`);
  const corpus = loadCorpus(o);
  const msgs = corpus.messages;
  const n = msgs.length;
  const bytes = msgs.reduce((a, b) => a + b.length, 0);
  o.log(`corpus: ${corpus.kind}, ${n} messages (${(bytes / 1e6).toFixed(2)} MB); warm-up, then ${o.rounds} round(s)...`);

  for (const e of ENTRIES) await pass(e, msgs, Math.min(o.warmup, n), false);

  const rounds: Round[][] = ENTRIES.map(() => []);
  for (let r = 0; r < o.rounds; r++) {
    for (let k = 0; k < ENTRIES.length; k++) {
      const j = (k + r) % ENTRIES.length; // rotate who goes first
      (globalThis as { gc?: () => void }).gc?.();
      const res = await pass(ENTRIES[j]!, msgs, n, r === 0);
      rounds[j]!.push(res);
      o.log(`round ${r + 1}/${o.rounds} ${ENTRIES[j]!.name}: ${(n / res.seconds).toFixed(0)} msg/s`);
    }
  }

  const base = rounds[0]![0]!.seen; // postern extract(), first round
  const entries: EntryResult[] = ENTRIES.map((e, j) => {
    const rs = rounds[j]!;
    const seconds = median(rs.map((x) => x.seconds));
    const cpuUs = median(rs.map((x) => x.cpuUs));
    const seen = rs[0]!.seen;
    let nonEmpty = 0, posternOnly = 0, otherOnly = 0, sameSubject = 0;
    if (e.kind === 'parser') {
      for (let i = 0; i < n; i++) {
        const s = seen[i]!, p = base[i]!;
        if (s.text) nonEmpty++;
        if (p.text && !s.text) posternOnly++;
        if (!p.text && s.text) otherOnly++;
        if (norm(s.subject) === norm(p.subject)) sameSubject++;
      }
    }
    return {
      name: e.name, kind: e.kind, messages: n, bytes, seconds,
      msgPerS: n / seconds, mbPerS: bytes / 1e6 / seconds, usPerMsg: (seconds * 1e6) / n, cpuUsPerMsg: cpuUs / n,
      roundMsgPerS: rs.map((x) => n / x.seconds),
      threw: rs[0]!.threw, processed: Math.min(...rs.map((x) => x.processed)),
      nonEmpty, posternOnly, otherOnly, sameSubject,
    };
  });
  return { corpus: { kind: corpus.kind, messages: n, spam: corpus.spam, ham: corpus.ham, MB: bytes / 1e6 }, rounds: o.rounds, entries };
}

const pct = (k: number, n: number): string => (n > 0 ? `${((100 * k) / n).toFixed(1)} %` : '–');

export function formatMimeResult(r: MimeBenchResult): string {
  const c = r.corpus;
  const lines = [
    `corpus: ${c.kind === 'split' ? `SpamAssassin split, test set: ${c.spam} spam + ${c.ham} ham` : 'synthetic MIME messages'} = ${c.messages} messages, ${c.MB.toFixed(2)} MB; median of ${r.rounds} round(s), one message at a time, one process`,
    `node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`,
    '',
    '| parser | msg/s | MB/s | µs/msg | CPU µs/msg | msg/s per round | threw | non-empty text | text only postern / only this | Subject = postern\'s |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const e of r.entries) {
    const p = e.kind === 'parser';
    lines.push(`| ${e.name} | ${e.msgPerS.toFixed(0)} | ${e.mbPerS.toFixed(2)} | ${e.usPerMsg.toFixed(0)} | ${e.cpuUsPerMsg.toFixed(0)} | ${e.roundMsgPerS.map((x) => x.toFixed(0)).join(' / ')} | ${e.threw} | ${p ? pct(e.nonEmpty, e.messages) : '–'} | ${p ? `${e.posternOnly} / ${e.otherOnly}` : '–'} | ${p ? pct(e.sameSubject, e.messages) : '–'} |`);
  }
  const own = r.entries[0]!;
  lines.push('');
  for (const e of r.entries.slice(1)) {
    if (e.kind !== 'parser') continue;
    const x = e.usPerMsg / own.usPerMsg;
    lines.push(`- ${own.name} vs ${e.name}: ${x >= 1 ? `${x.toFixed(1)}× faster` : `${(1 / x).toFixed(1)}× slower`} (${own.usPerMsg.toFixed(0)} vs ${e.usPerMsg.toFixed(0)} µs/msg)`);
  }
  const cls = r.entries.find((e) => e.kind === 'context');
  if (cls) lines.push(`- the classifier's per-message work (${cls.name}): ${cls.usPerMsg.toFixed(0)} µs/msg, of which extract() is ~${pct(own.usPerMsg, cls.usPerMsg)}`);
  return lines.join('\n');
}

function envOptions(): Partial<MimeBenchOptions> {
  const e = process.env;
  const o: Partial<MimeBenchOptions> = {};
  if (e.BENCH_ROUNDS) o.rounds = Number(e.BENCH_ROUNDS);
  if (e.BENCH_SPLIT) o.split = e.BENCH_SPLIT;
  return o;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await runMimeBench(envOptions());
  console.log(formatMimeResult(r));
  const short = r.entries.filter((e) => e.processed !== e.messages);
  if (short.length) {
    console.error(`entries that did not process every message: ${short.map((e) => e.name).join(', ')}`);
    process.exitCode = 1;
  }
}
