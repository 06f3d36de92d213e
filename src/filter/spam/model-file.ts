// The spam model file format. "PSPAM1\n\0", u32 LE header length, the JSON header (ModelHeader),
// zero padding to 4 bytes, then two sections, each (u32 count, u32[count] indices,
// f32/u32[count] values...): the LR weights, then the chi-square document counts (spam, ham).
// Header versions: 1 implies feature set 1; 2 records the tokenizer's feature set
// (tokenize.ts FEATURE_SET); 3 adds `views` and the two-view stacker (stacker.ts).
import type { Counts } from './chi-square.js';
import { PosternError } from '../../errors.js';
import type { LR } from './logistic-regression.js';
import { STACK_TERMS, type Stack } from './stacker.js';
import { FEATURE_SET } from './tokenize.js';
import type { ModelKind, TrainOptions } from './train-options.js';

export interface ModelHeader {
  format: 'postern-spam';
  /**
   * 1: feature set 1 implied; 2: `featureSet` says which tokens the model was trained on;
   * 3: and `views` (2: weights over [0, 2^(bits+1)), header tokens in the upper half)
   */
  version: 1 | 2 | 3;
  kind: ModelKind;
  bits: number;
  bigrams: boolean;
  featureSet?: number;
  views?: number;
  /** two views: the stacker fitted by cross-validation (see Stack) */
  stack?: Stack;
  threshold: number;
  bias: number;
  nSpam: number;
  nHam: number;
  params: Required<TrainOptions>;
  cv?: { folds: number; fpr: number; recall: number; fp: number; fn: number; nSpam: number; nHam: number };
}

/** What a model file holds: the header and the learners it names. */
export interface ModelParts {
  header: ModelHeader;
  lr: LR | null;
  counts: Counts | null;
}

/** A model's bytes; the learners' zero entries are left out. */
export function serializeModel({ header, lr, counts }: ModelParts): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (4 - ((8 + 4 + json.length) % 4)) % 4;
  const chunks: Buffer[] = [Buffer.from('PSPAM1\n\0', 'latin1'), u32(json.length), json, Buffer.alloc(pad)];
  if (lr) {
    const idx: number[] = [];
    const w = lr.w;
    for (let i = 0; i < w.length; i++) if (w[i] !== 0) idx.push(i);
    const vals = new Float32Array(idx.length);
    idx.forEach((k, j) => (vals[j] = w[k]!));
    chunks.push(u32(idx.length), Buffer.from(Uint32Array.from(idx).buffer), Buffer.from(vals.buffer));
  } else chunks.push(u32(0));
  if (counts) {
    const idx: number[] = [];
    const { spam, ham } = counts;
    for (let i = 0; i < spam.length; i++) if (spam[i] || ham[i]) idx.push(i);
    const s = new Uint32Array(idx.length), h = new Uint32Array(idx.length);
    idx.forEach((k, j) => { s[j] = spam[k]!; h[j] = ham[k]!; });
    chunks.push(u32(idx.length), Buffer.from(Uint32Array.from(idx).buffer), Buffer.from(s.buffer), Buffer.from(h.buffer));
  } else chunks.push(u32(0));
  return Buffer.concat(chunks);
}

/** Parse and check a model file; anything it cannot load is a PST_ERR_SPAM_MODEL. */
export function deserializeModel(buf: Buffer): ModelParts {
  try {
    return readModel(buf);
  } catch (err) {
    if (err instanceof PosternError) throw err;
    // A truncated or garbled file surfaces as a RangeError or SyntaxError from the readers.
    throw new PosternError('PST_ERR_SPAM_MODEL', `damaged spam model: ${(err as Error).message}`, { cause: err });
  }
}

function readModel(buf: Buffer): ModelParts {
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== 'PSPAM1\n\0') throw new PosternError('PST_ERR_SPAM_MODEL', 'not a postern spam model');
  const hlen = buf.readUInt32LE(8);
  const header = JSON.parse(buf.toString('utf8', 12, 12 + hlen)) as ModelHeader;
  if (header.format !== 'postern-spam' || ![1, 2, 3].includes(header.version)) throw new PosternError('PST_ERR_SPAM_MODEL', 'unsupported spam model version');
  if (header.version === 1) header.featureSet = 1;
  else if (!(Number.isInteger(header.featureSet) && header.featureSet! >= 1 && header.featureSet! <= FEATURE_SET)) {
    throw new PosternError('PST_ERR_SPAM_MODEL', `unsupported spam model feature set ${header.featureSet}`);
  }
  const views = header.version >= 3 ? header.views : 1;
  if (views !== 1 && !(views === 2 && header.kind === 'lr')) throw new PosternError('PST_ERR_SPAM_MODEL', `unsupported spam model views ${String(header.views)}`);
  header.views = views;
  const finite = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
  if (!(Number.isInteger(header.bits) && header.bits >= 8 && header.bits <= 24) || (header.params && header.params.bits !== header.bits)) {
    throw new PosternError('PST_ERR_SPAM_MODEL', `bad spam model bits ${String(header.bits)}`);
  }
  if (!finite(header.threshold) || !finite(header.bias) || (header.params && !finite(header.params.norm))) throw new PosternError('PST_ERR_SPAM_MODEL', 'bad spam model header: a number is not finite');
  if (header.params && header.params.featureSet === undefined) header.params.featureSet = header.featureSet!;
  if (header.params) header.params.views = views;
  let pos = 12 + hlen;
  pos += (4 - (pos % 4)) % 4;
  // copy into an aligned buffer so typed-array views are legal
  const al = new Uint8Array(buf.length - pos);
  al.set(buf.subarray(pos));
  const dv = new DataView(al.buffer);
  let p = 0;
  const size = 1 << header.bits;
  const section = (): number => { const n = dv.getUint32(p, true); p += 4; return n; };
  const arr = (n: number): Uint32Array => { const a = new Uint32Array(al.buffer, p, n); p += 4 * n; return a; };
  let lr: LR | null = null;
  const nw = section();
  if (nw || header.kind !== 'chi') {
    const idx = arr(nw);
    const vals = new Float32Array(al.buffer, p, nw); p += 4 * nw;
    const w = new Float32Array(size * views);
    for (let j = 0; j < nw; j++) w[idx[j]!] = vals[j]!;
    lr = { w, bias: header.bias };
    if (views > 1) {
      const st = header.stack;
      if (st?.terms !== undefined) {
        if (st.terms !== STACK_TERMS || st.coef?.length !== 7 || st.viewBias?.length !== 2) throw new PosternError('PST_ERR_SPAM_MODEL', `unsupported spam model stacker ${String(st.terms)}`);
        if (![...st.coef, ...st.viewBias, st.bias].every(finite)) throw new PosternError('PST_ERR_SPAM_MODEL', 'bad spam model stacker: a number is not finite');
        lr.stack = st;
      } else {
        // the first format-3 files: the stacker folded into the weights and the bias
        lr.stack = { coef: [1, 1], bias: header.bias, viewBias: [0, 0] };
      }
    }
  }
  let counts: Counts | null = null;
  const nc = section();
  if (nc || header.kind !== 'lr') {
    const idx = arr(nc), s = arr(nc), h = arr(nc);
    const spam = new Uint32Array(size), ham = new Uint32Array(size);
    for (let j = 0; j < nc; j++) { spam[idx[j]!] = s[j]!; ham[idx[j]!] = h[j]!; }
    counts = { spam, ham, nSpam: header.nSpam, nHam: header.nHam };
  }
  return { header, lr, counts };
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
