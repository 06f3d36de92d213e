// Header tokens for the spam classifier (the header view, token-view.ts):
//   "<h>:" + word for Subject, From, To/Cc, Reply-To, Return-Path, X-Mailer, User-Agent,
//   Content-Type...; "h:<name>:" + word for other headers; "hdr:<name>" for presence;
//   Received "rcvd:" hosts; Message-ID "mid:" host; host names with their parent domains
//   (hostAndParents, also used for link hosts); and, in feature set 2, the header order.
import { FNV_OFFSET, fnv } from './token-hash.js';
import type { BucketSink, Sink } from './token-sink.js';
import { words } from './word-scanner.js';

/** "a.b.example.com" -> ["a.b.example.com", "b.example.com", "example.com"] (stops at 2 labels). */
export function hostAndParents(host: string, prefix: string, into: Sink): void {
  let h = host.toLowerCase();
  if (h.charCodeAt(h.length - 1) === 0x2e) h = h.replace(/\.+$/, '');
  if (!h || h.length > 253) return;
  into.addSlice(prefix, h, 0, h.length);
  const last = h.charCodeAt(h.length - 1);
  if (last >= 0x30 && last <= 0x39 && IPV4.test(h)) {
    into.add(prefix + 'ip');
    into.addSlice(prefix, h, 0, h.lastIndexOf('.'));
    return;
  }
  // parents while they keep two labels, at most four
  let start = 0;
  for (let k = 0; k < 4; k++) {
    const dot = h.indexOf('.', start);
    if (dot < 0 || h.indexOf('.', dot + 1) < 0) return;
    start = dot + 1;
    into.addSlice(prefix, h, start, h.length);
  }
}

const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;
// Bounded parts (a local part is at most 64 octets, RFC 5321 §4.5.3.1.1): unbounded, every start
// in a long run of letters scanned to its end, O(n²) — RFC 2047 words decode into such runs, and
// 40 folded Subject headers cost 6 s of a filter worker (found by review).
const ADDR = /[A-Za-z0-9._%+-]{1,64}@([A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63})/g;
const HOSTISH = /\b([a-z0-9-]+(?:\.[a-z0-9-]+)+)\b/gi;
const TEXT_HEADERS = new Map(Object.entries({
  subject: 's:',
  from: 'f:',
  to: 't:',
  cc: 't:',
  'reply-to': 'rt:',
  'return-path': 'rp:',
  'x-mailer': 'xm:',
  'user-agent': 'xm:',
  'content-type': 'ct:',
  'mime-version': 'mv:',
  'content-transfer-encoding': 'cte:',
  'x-priority': 'xp:',
  'x-msmail-priority': 'xp:',
  organization: 'org:',
  'list-id': 'lid:',
  precedence: 'prec:',
  'sender': 'snd:',
  'errors-to': 'et:',
}));
// headers whose presence is a token ("hdr:" + name), besides every X- header
const PRESENCE_HEADERS = new Set(['received', 'date', 'message-id', 'subject', 'from', 'to', 'cc', 'content-type', 'mime-version', 'reply-to', 'return-path']);

// other headers' words, prefixed with the header's name, except those that only carry noise
const SKIP_GENERIC = new Set(['received', 'date', 'message-id', 'content-length', 'lines', 'x-uid', 'status', 'x-status', 'x-keywords', 'content-disposition', 'references', 'in-reply-to', 'delivery-date']);
// headers that say the message came through a mailing list (LIST_TOKEN, with two views)
const LIST_HEADERS = new Set(['list-id', 'list-unsubscribe', 'list-post', 'list-help', 'mailing-list', 'x-mailman-version', 'x-beenthere', 'x-loop', 'x-ml-name']);

/** What the header walk learned that the structure tokens need. */
export interface HeaderFacts {
  subject: string;
  haveDate: boolean;
  haveMsgId: boolean;
  haveFrom: boolean;
  haveTo: boolean;
  /** addresses in To and Cc */
  rcpts: number;
  /** Received headers */
  received: number;
  /** the message came through a mailing list (looked for only when `lists`) */
  list: boolean;
}

/**
 * The tokens of the headers (feature set 1), in header order; the Subject's words also go to the
 * content view, with bigrams if asked. Leaves the sink in the header view.
 */
export function headerTokens(headers: Array<[string, string]>, bigrams: boolean, lists: boolean, t: Sink): HeaderFacts {
  const f: HeaderFacts = { subject: '', haveDate: false, haveMsgId: false, haveFrom: false, haveTo: false, rcpts: 0, received: 0, list: false };
  t.view = 1;
  for (const [name, value] of headers) {
    if (lists && LIST_HEADERS.has(name)) f.list = true;
    if (name.startsWith('x-') || PRESENCE_HEADERS.has(name)) {
      t.addSlice('hdr:', name, 0, name.length);
    }
    const pre = TEXT_HEADERS.get(name);
    if (!pre && !SKIP_GENERIC.has(name)) words(value, 'h:' + name + ':', t, false, 40);
    if (pre) {
      words(value, pre, t, false, 200);
      if (value.includes('@')) {
        ADDR.lastIndex = 0;
        let m: RegExpExecArray | null;
        while ((m = ADDR.exec(value)) !== null) hostAndParents(m[1]!, pre + '@', t);
      }
    }
    switch (name) {
      case 'subject':
        f.subject = value;
        t.view = 0;
        words(value, '', t, bigrams, 200); // subject words count as body words too
        t.view = 1;
        break;
      case 'date':
        f.haveDate = true;
        break;
      case 'message-id': {
        f.haveMsgId = true;
        const at = /@([^>\s]+)/.exec(value);
        if (at) hostAndParents(at[1]!, 'mid:', t);
        else t.add('mid:nohost');
        break;
      }
      case 'from':
        f.haveFrom = true;
        break;
      case 'to':
      case 'cc':
        f.haveTo = true;
        f.rcpts += (value.match(/@/g) ?? []).length;
        break;
      case 'received': {
        if (++f.received > 8) break;
        HOSTISH.lastIndex = 0;
        let m: RegExpExecArray | null;
        let n = 0;
        while ((m = HOSTISH.exec(value)) !== null && n++ < 12) {
          const h = m[1]!;
          if (h.indexOf('.') > 0 && /[a-z]/i.test(h) ? /\.[a-z]{2,}$/i.test(h) : /^\d+\.\d+\.\d+\.\d+$/.test(h)) hostAndParents(h, 'rcvd:', t);
        }
        if (/\bwith (e?smtpa?|local|http|esmtpsa?)\b/i.test(value)) t.add('rcvd:with:' + /\bwith (\S+)/i.exec(value)![1]!.toLowerCase());
        break;
      }
    }
  }
  return f;
}

/** Feature set 2: the order of the header names, in pairs and triples. */
export function headerOrder(headers: Array<[string, string]>, t: Sink): void {
  let prev1 = '', prev2 = '';
  for (let k = 0; k < headers.length; k++) {
    const name = headers[k]![0];
    t.add('hseq:' + prev1 + '>' + name);
    t.add('hseq3:' + prev2 + '>' + prev1 + '>' + name);
    prev2 = prev1;
    prev1 = name;
  }
}

// headerOrder's tokens, hashed: FNV states of "hseq:" and "hseq3:", and a state continued with '>'
const HSEQ = fnv(FNV_OFFSET, 'hseq:');
const HSEQ3 = fnv(FNV_OFFSET, 'hseq3:');
const gt = (h: number): number => Math.imul(h ^ 0x3e, 0x01000193);
/**
 * headerOrder into the bucket sink without building the tokens' strings (measurably cheaper
 * in a short-lived `spam classify`): one pass over each name continues the five FNV states
 * that need it.
 */
export function headerOrderBuckets(headers: Array<[string, string]>, out: BucketSink): void {
  out.view = 1;
  let pre2 = gt(HSEQ); // "hseq:" + prev1 + ">"
  let pre3 = gt(gt(HSEQ3)); // "hseq3:" + prev2 + ">" + prev1 + ">"
  let q = gt(HSEQ3); // "hseq3:" + prev1 + ">"
  for (let k = 0; k < headers.length; k++) {
    const name = headers[k]![0];
    let a = pre2, b = pre3, c = q, d = HSEQ3, e = HSEQ;
    for (let i = 0; i < name.length; i++) {
      const ch = name.charCodeAt(i);
      a = Math.imul(a ^ ch, 0x01000193);
      b = Math.imul(b ^ ch, 0x01000193);
      c = Math.imul(c ^ ch, 0x01000193);
      d = Math.imul(d ^ ch, 0x01000193);
      e = Math.imul(e ^ ch, 0x01000193);
    }
    out.push(a);
    out.push(b);
    pre3 = gt(c);
    q = gt(d);
    pre2 = gt(e);
  }
}
