// Spam classifier: extraction, tokens, model train/classify, serialisation, CLI contract.
// Offline and corpus-free: messages are synthetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { extract, decodeWords, decodeQP, htmlToText } from '../../src/filter/spam/extract.js';
import { tokenize, FEATURE_SET } from '../../src/filter/spam/tokenize.js';
import { hashToken } from '../../src/filter/spam/token-hash.js';
import { tokenView, LIST_TOKEN } from '../../src/filter/spam/token-view.js';
import { SpamModel } from '../../src/filter/spam/model.js';
import { train, trainFeatures } from '../../src/filter/spam/train.js';
import { features, featurize } from '../../src/filter/spam/features.js';
import { fitStacker } from '../../src/filter/spam/stacker.js';
import { chooseThreshold, chooseThresholdFPR, chooseThresholdMinimax, chooseThresholdPoisson, logPoissonCdf } from '../../src/filter/spam/threshold.js';
import { metrics } from '../../src/filter/spam/metrics.js';
import { spamMain } from '../../src/filter/spam/cli.js';
import { tmpdir } from '../helpers/tmpdir.js';

const msg = (s: string): Buffer => Buffer.from(s.replace(/\n/g, '\n'), 'latin1');

test('extract: mbox line, folded headers, RFC 2047 words', () => {
  const x = extract(msg('From someone@example.com  Thu Jan  1 00:00:00 2000\nSubject: =?UTF-8?B?SGVsbG8gd8O2cmxk?=\n =?ISO-8859-1?Q?caf=E9_au_lait?=\nFrom: "A" <a@b.example>\n\nbody text\n'));
  assert.equal(x.mboxLine, true);
  const subj = x.headers.find(([k]) => k === 'subject')![1];
  assert.equal(subj, 'Hello wörldcafé au lait');
  assert.deepEqual(x.text, ['body text\n']);
  assert.equal(decodeWords('plain'), 'plain');
  assert.equal(decodeWords('=?gb2312?B?1tDOxA==?='), '中文');
});

test('extract: multipart with base64, quoted-printable and HTML', () => {
  const b64 = Buffer.from('Grüße aus Köln', 'utf8').toString('base64');
  const raw = [
    'Subject: t', 'MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary="XX"', '',
    'preamble', '--XX', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '', b64,
    '--XX', 'Content-Type: text/html; charset=iso-8859-1', 'Content-Transfer-Encoding: quoted-printable', '',
    '<html><head><style>p{x}</style></head><body><script>var evil=1</script><p>Caf=E9 <a href=3D"http://Cheap.Pills.example/buy">click=', ' here</a> &amp; <img src=3D"x.gif"></p></body></html>',
    '--XX--', 'epilogue', '',
  ].join('\r\n');
  const x = extract(msg(raw));
  assert.equal(x.text.length, 1);
  assert.equal(x.text[0]!.trim(), 'Grüße aus Köln');
  assert.equal(x.html.length, 1);
  const h = x.html[0]!.replace(/\s+/g, ' ').trim();
  assert.equal(h, 'Café click here &');
  assert.ok(x.hosts.includes('cheap.pills.example'));
  assert.equal(x.images, 1);
  assert.deepEqual(x.parts.map((p) => p.type), ['text/plain', 'text/html']);
  assert.equal(decodeQP('a=3Db=\nc=ZZ').toString('latin1'), 'a=bc=ZZ');
  assert.equal(htmlToText('<!-- hidden -->a&#x41;&#66;&nbsp;', []).text, ' aAB ');
});

test('extract: a nested boundary that starts with the outer one is not the outer delimiter', () => {
  // as in four SpamAssassin spam-2 messages: outer "=_dG", inner "=_dGAA"
  const raw = [
    'Subject: t', 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="=_dG"', '',
    '--=_dG', 'Content-Type: multipart/alternative; boundary="=_dGAA"', '',
    '--=_dGAA', 'Content-Type: text/plain', '', 'plain words here',
    '--=_dGAA', 'Content-Type: text/html', '', '<p>html words here</p>',
    '--=_dGAA--', '',
    '--=_dG  ', 'Content-Type: text/plain', '', 'after padding',
    '--=_dG--', '',
  ].join('\r\n');
  const x = extract(msg(raw));
  assert.deepEqual(x.text.map((t) => t.trim()), ['plain words here', 'after padding']);
  assert.deepEqual(x.html.map((t) => t.replace(/\s+/g, ' ').trim()), ['html words here']);
});

test('extract: 8-bit junk and garbage never throw', () => {
  const latin = Buffer.concat([Buffer.from('Subject: x\nContent-Type: text/plain; charset=iso-8859-1\n\n'), Buffer.from([0x63, 0x61, 0x66, 0xe9])]);
  assert.equal(extract(latin).text[0], 'café');
  const unknown = Buffer.concat([Buffer.from('Content-Type: text/plain; charset=x-bogus-42\n\n'), Buffer.from([0xff, 0xfe, 0x41])]);
  assert.equal(extract(unknown).text[0], '\u00ff\u00feA');
  // random bytes, deep nesting without boundaries, unterminated parts
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  for (let i = 0; i < 200; i++) {
    const junk = Buffer.from(Array.from({ length: 300 }, rnd));
    assert.doesNotThrow(() => extract(junk));
    assert.doesNotThrow(() => tokenize(Buffer.concat([Buffer.from('Content-Type: multipart/mixed; boundary=a\n\n--a\n'), junk])));
  }
  const nested = 'Content-Type: multipart/mixed; boundary=a\n\n' + '--a\nContent-Type: multipart/mixed; boundary=a\n\n'.repeat(50);
  assert.doesNotThrow(() => extract(msg(nested)));
  assert.doesNotThrow(() => extract(Buffer.alloc(0)));
});

test('tokenize: words, header prefixes, hosts and structure', () => {
  const t = tokenize(msg([
    'From: "Deals" <promo@mail.offers.example>', 'To: a@x.example, b@x.example, c@x.example, d@x.example, e@x.example',
    'Subject: FREE MONEY NOW', 'X-Mailer: BulkBlaster 3', 'Received: from relay.offers.example (relay.offers.example [192.0.2.7]) by mx.example',
    'Content-Type: text/html', '',
    '<p>Visit <a href="http://www.win.example/x">our site</a> to claim a prize</p>', '',
  ].join('\n')));
  for (const k of ['s:free', 'free', 'f:@offers.example', 'xm:bulkblaster', 'rcvd:relay.offers.example', 'rcvd:192.0.2.7',
    'url:www.win.example', 'url:win.example', 'claim', 'prize', 'meta:htmlonly', 'meta:subjcaps', 'meta:nodate', 'meta:nomsgid', 'meta:rcpts:some']) {
    assert.ok(t.has(k), `missing token ${k}`);
  }
  assert.ok(!t.has('a'), 'one-letter words are dropped');
  assert.ok(![...t].some((k) => k.includes('<')), 'no tag fragments');
});

test('tokenize: feature set 2 adds the order of the header names', () => {
  const raw = msg([
    'Return-Path: <bounce@news.shop.example>',
    'Received: from mail.shop.example (mail.shop.example [192.0.2.1]) by mx.example.net with ESMTP',
    'Received: from dyn-42 ([198.51.100.7]) by relay.example.org',
    'From: Shop <news@shop.example>', 'To: me@example.net', 'Subject: hello', 'Message-ID: <1@shop.example>', '',
    'See http://www.shop.example/x', '',
  ].join('\n'));
  const t2 = tokenize(raw), t1 = tokenize(raw, { featureSet: 1 });
  assert.equal(FEATURE_SET, 2);
  for (const k of ['hseq:>return-path', 'hseq:return-path>received', 'hseq:received>received', 'hseq:received>from',
    'hseq:subject>message-id', 'hseq3:>>return-path', 'hseq3:>return-path>received', 'hseq3:received>received>from',
    'hseq3:to>subject>message-id']) {
    assert.ok(t2.has(k), `missing token ${k}`);
  }
  assert.ok(![...t1].some((k) => k.startsWith('hseq')), 'feature set 1 has none of them');
  assert.deepEqual([...t2].filter((k) => !t1.has(k)).sort(), [...t2].filter((k) => k.startsWith('hseq')).sort(), 'feature set 2 only adds them');
  assert.equal([...t2].filter((k) => k.startsWith('hseq:')).length, 7); // received>received once
});

const sorted = (a: Uint32Array): number[] => Array.from(a).sort((x, y) => x - y);

test('features: hashed buckets equal featurize(tokenize()) for both feature sets and both view layouts', () => {
  const raws = [
    msg('From: "Deals" <promo@mail.offers.example>\nSubject: FREE MONEY\nReceived: from relay.offers.example (relay.offers.example [192.0.2.7]) by mx.example\n\nWin a prize at http://win.example/x now\n'),
    msg('Subject: x\nContent-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: text/plain\n\nhello world\n--a--\n'),
    // joiners, long runs, non-ASCII letters and digits, letters outside the BMP
    Buffer.concat([Buffer.from('Content-Type: text/plain; charset=utf-8\nSubject: =?utf-8?q?=C3=89t=C3=A9?=\n\n'),
      Buffer.from("--don't-stop_me-- now-- a--b ''x'' 1234567890123456789012345 ÉCOLE Straße İstanbul ١٢٣ 𝐀𝐁c x\ud800y \udc00z €5 £3 50% wow!!\n", 'utf8')]),
    Buffer.from([0xff, 0x00, 0x41, 0x0a, 0x0a, 0x42]),
    Buffer.alloc(0),
    msg('From: a@lists.example\nList-Id: <talk.lists.example>\nPrecedence: list\nSubject: re: patch\n\nlooks good to me\n'),
  ];
  for (const raw of raws) {
    for (const opts of [{}, { featureSet: 1 }, { featureSet: 2, bigrams: true }, { views: 2 }, { featureSet: 1, views: 2 }]) {
      assert.deepEqual(sorted(features(raw, 16, opts)), Array.from(featurize(tokenize(raw, opts), 16, opts.views)), JSON.stringify(opts));
    }
  }
  // the two views: content tokens below 2^bits, header tokens above, as tokenView says
  const two = features(raws[0]!, 16, { views: 2 });
  const toks = [...tokenize(raws[0]!)];
  assert.equal(two.filter((b) => b >= 1 << 16).length, new Set(toks.filter((t) => tokenView(t) === 1).map((t) => hashToken(t) & 0xffff)).size);
  assert.deepEqual(toks.filter((t) => tokenView(t) === 0).sort(), toks.filter((t) => !t.includes(':') || /^(long|url|meta|part|cs|enc|file):/.test(t)).sort());
  assert.ok(['free', 'money', 'win', 'prize', 'url:win.example', 'meta:noto'].every((t) => tokenView(t) === 0));
  assert.ok(['s:free', 'f:@offers.example', 'rcvd:relay.offers.example', 'hdr:received', 'hseq:>from'].every((t) => tokenView(t) === 1));
  // list mail: with two views, one fact bucket past both views; with one view, no such thing
  const listed = raws[raws.length - 1]!;
  assert.ok(tokenize(listed, { views: 2 }).has(LIST_TOKEN) && !tokenize(listed).has(LIST_TOKEN));
  assert.equal(features(listed, 16, { views: 2 }).filter((b) => b >= 2 << 16).length, 1);
  assert.ok(features(listed, 16, { views: 2 }).includes(2 << 16));
  assert.ok(!features(raws[0]!, 16, { views: 2 }).some((b) => b >= 2 << 16), 'not list mail');
  // the list token is no word: a body saying "!list" or "list" changes nothing about it
  const says = msg('Subject: the !list\n\nsee the !list and the list of items\n');
  for (const views of [1, 2]) {
    assert.deepEqual(sorted(features(says, 16, { views })), Array.from(featurize(tokenize(says, { views }), 16, views)));
    assert.ok(!features(says, 16, { views }).some((b) => b >= 2 << 16));
  }
  // featurize drops the list token with one view, without leaving a hole
  const fz = featurize([LIST_TOKEN, 'a1', 'zz'], 16);
  assert.deepEqual(Array.from(fz), [hashToken('a1') & 0xffff, hashToken('zz') & 0xffff].sort((x, y) => x - y));
  assert.deepEqual(Array.from(featurize([LIST_TOKEN, 'zz'], 16, 2)), [hashToken('zz') & 0xffff, 2 << 16]);
  // the largest bits: header buckets in [2^24, 2^25), the list fact at 2^25
  const big = features(listed, 24, { views: 2 });
  assert.ok(big.some((b) => b >= 1 << 24 && b < 2 << 24) && big.includes(2 << 24) && !big.some((b) => b > 2 << 24));
  // a long header block (the header-order hashes are computed without their strings)
  const many = msg(Array.from({ length: 20000 }, (_, i) => `X-H${i % 7 === 0 ? 'a' : i}: v`).join('\n') + '\n\nbody\n');
  assert.deepEqual(sorted(features(many, 20)), Array.from(featurize(tokenize(many), 20)));
  assert.deepEqual(sorted(features(raws[0]!, 20)), Array.from(featurize(tokenize(raws[0]!), 20)), 'and after');
});

// ---- a tiny synthetic corpus ---------------------------------------------------------------

function synth(n: number, spam: boolean, seed: number): Buffer[] {
  const spamWords = ['viagra', 'winner', 'free', 'money', 'prize', 'click', 'offer', 'cheap', 'casino', 'loan'];
  const hamWords = ['meeting', 'patch', 'kernel', 'review', 'lunch', 'tuesday', 'build', 'release', 'thanks', 'agenda'];
  const shared = ['the', 'and', 'you', 'this', 'today', 'please', 'about', 'with'];
  let s = seed;
  const rnd = (k: number) => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % k;
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const own = spam ? spamWords : hamWords;
    const words = Array.from({ length: 30 }, () => (rnd(3) === 0 ? own[rnd(own.length)]! : shared[rnd(shared.length)]!));
    const from = spam ? `deals${rnd(100)}@promo${rnd(5)}.example` : `dev${rnd(20)}@lists.example.org`;
    out.push(msg(`From: ${from}\nTo: me@example.net\nSubject: ${own[rnd(own.length)]} ${shared[rnd(shared.length)]}\nDate: Mon, 1 Jan 2001 00:00:00 +0000\nMessage-ID: <${i}@x>\n\n${words.join(' ')}\n`));
  }
  return out;
}

test('model: trains on a tiny corpus and separates spam from ham, deterministically', () => {
  const spam = synth(60, true, 1), ham = synth(90, false, 2);
  const m = train(spam, ham, { folds: 3, bits: 16 });
  const testSpam = synth(30, true, 3), testHam = synth(30, false, 4);
  for (const b of testSpam) assert.equal(m.classify(b).spam, true);
  for (const b of testHam) assert.equal(m.classify(b).spam, false);
  const s = m.score(testSpam[0]!);
  assert.ok(s >= 0 && s <= 1);
  const again = train(spam, ham, { folds: 3, bits: 16 });
  assert.deepEqual(again.serialize(), m.serialize(), 'same input, same seed: same model bytes');
  // the default ensemble (averaged weights) differs from a single LR but still separates
  const single = train(spam, ham, { folds: 3, bits: 16, ensemble: 1 });
  assert.notDeepEqual(single.serialize(), m.serialize());
  assert.ok(testSpam.every((b) => single.classify(b).spam) && testHam.every((b) => !single.classify(b).spam));
  for (const kind of ['chi', 'combo'] as const) {
    const k = train(spam, ham, { folds: 3, bits: 16, kind });
    assert.ok(testSpam.every((b) => k.classify(b).spam) && testHam.every((b) => !k.classify(b).spam), kind);
  }
  // swapped labels must invert the verdicts
  const swapped = train(ham, spam, { folds: 3, bits: 16 });
  assert.ok(testSpam.every((b) => !swapped.classify(b).spam));
});

test('model: serialisation round trip keeps scores and threshold', () => {
  const spam = synth(40, true, 5), ham = synth(40, false, 6);
  for (const kind of ['lr', 'chi', 'combo'] as const) {
    const m = train(spam, ham, { folds: 2, bits: 14, kind });
    const back = SpamModel.deserialize(m.serialize());
    assert.equal(back.threshold, m.threshold);
    assert.equal(back.header.kind, kind);
    for (const b of [...synth(5, true, 9), ...synth(5, false, 10)]) assert.equal(back.score(b), m.score(b));
  }
  assert.throws(() => SpamModel.deserialize(Buffer.from('nonsense')), /not a postern spam model/);
  assert.throws(() => SpamModel.deserialize(Buffer.from('nonsense')), { code: 'PST_ERR_SPAM_MODEL' });
  const truncated = Buffer.concat([Buffer.from('PSPAM1\n\0', 'latin1'), Buffer.from([200, 0, 0, 0]), Buffer.from('{"format":')]);
  assert.throws(() => SpamModel.deserialize(truncated), { code: 'PST_ERR_SPAM_MODEL', message: /^damaged spam model/ }, 'a cut-off header is the same kind of error');
});

/** The same model file with its JSON header edited. */
function editHeader(buf: Buffer, edit: (h: Record<string, unknown>) => void): Buffer {
  const hlen = buf.readUInt32LE(8);
  const header = JSON.parse(buf.toString('utf8', 12, 12 + hlen)) as Record<string, unknown>;
  const rest = buf.subarray(12 + hlen + ((4 - ((12 + hlen) % 4)) % 4));
  edit(header);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  return Buffer.concat([buf.subarray(0, 8), len, json, Buffer.alloc((4 - ((12 + json.length) % 4)) % 4), rest]);
}

test('model: format version 1 files still load, and score with the tokens they were trained on', () => {
  const spam = synth(40, true, 5), ham = synth(40, false, 6);
  const probe = [...synth(5, true, 9), ...synth(5, false, 10)];
  // a model trained on feature set 1, then written the way format version 1 wrote it
  const m1 = train(spam, ham, { folds: 2, bits: 14, featureSet: 1, views: 1 });
  assert.equal(m1.header.version, 2);
  assert.equal(m1.header.featureSet, 1);
  const v1 = editHeader(m1.serialize(), (h) => {
    h.version = 1;
    delete h.featureSet;
    delete (h.params as Record<string, unknown>).featureSet;
  });
  const back = SpamModel.deserialize(v1);
  assert.equal(back.header.version, 1);
  assert.equal(back.tokenizeOptions.featureSet, 1);
  for (const b of probe) assert.equal(back.score(b), m1.score(b));
  // feature set 2 in one view (format version 2); read as if it were version 1, its scores change
  const m2 = train(spam, ham, { folds: 2, bits: 14, views: 1 });
  assert.equal(m2.header.version, 2);
  assert.equal(m2.header.featureSet, FEATURE_SET);
  const m2back = SpamModel.deserialize(m2.serialize());
  for (const b of probe) assert.equal(m2back.score(b), m2.score(b));
  const m2asV1 = SpamModel.deserialize(editHeader(m2.serialize(), (h) => { h.version = 1; }));
  assert.ok(probe.some((b) => m2asV1.score(b) !== m2.score(b)), 'the feature set matters');
  assert.throws(() => SpamModel.deserialize(editHeader(m2.serialize(), (h) => { h.version = 4; })), /unsupported spam model version/);
  assert.throws(() => SpamModel.deserialize(editHeader(m2.serialize(), (h) => { h.featureSet = 99; })), /feature set/);
  // the default: two views (format version 3); read as one view, its scores change
  const m3 = train(spam, ham, { folds: 2, bits: 14 });
  assert.deepEqual([m3.header.version, m3.header.views, m3.header.stack?.coef.length, m3.header.stack?.viewBias?.length], [3, 2, 7, 2]);
  const m3back = SpamModel.deserialize(m3.serialize());
  for (const b of probe) assert.equal(m3back.score(b), m3.score(b));
  const m3asV2 = SpamModel.deserialize(editHeader(m3.serialize(), (h) => { h.version = 2; }));
  assert.ok(probe.some((b) => m3asV2.score(b) !== m3.score(b)), 'the views matter');
  assert.throws(() => SpamModel.deserialize(editHeader(m3.serialize(), (h) => { h.views = 3; })), /views/);
  assert.throws(() => SpamModel.deserialize(editHeader(m3.serialize(), (h) => { (h.stack as Record<string, unknown>).terms = 'z0,z1,z2'; })), /stacker/);
  // the first format-3 files folded the stacker into the weights and the bias (no terms): the
  // views' sums plus the bias, which is what a stacker of [1, 1, 0...] over zero view biases gives
  const folded = SpamModel.deserialize(editHeader(m3.serialize(), (h) => { h.bias = 0.25; h.stack = { coef: [0.3, 0.7], bias: 0.1 }; }));
  const plain = SpamModel.deserialize(editHeader(m3.serialize(), (h) => {
    h.stack = { coef: [1, 1, 0, 0, 0, 0, 0], bias: 0.25, terms: 'z0,z1,L*z0,L*z1,L,z0*len0,z1*len1', viewBias: [0, 0] };
  }));
  for (const b of probe) assert.equal(folded.score(b), plain.score(b));
  assert.ok(probe.some((b) => folded.score(b) !== m3.score(b)));
  // each stacker term where it belongs: the list fact adds coef[4] and nothing else, and a
  // view bias moves the log-odds by its coefficient
  const logOdds = (m: SpamModel, x: Uint32Array): number => { const p = m.scoreFeatures(x); return Math.log(p / (1 - p)); };
  const withStack = (st: Record<string, unknown>): SpamModel => SpamModel.deserialize(editHeader(m3.serialize(), (h) => { h.stack = { ...(h.stack as object), ...st }; }));
  const x = features(probe[0]!, 14, { views: 2 });
  assert.ok(!x.some((b) => b >= 2 << 14));
  const xl = Uint32Array.from([...x, 2 << 14]);
  const onlyViews = withStack({ coef: [1, 1, 0, 0, 0, 0, 0] });
  assert.equal(onlyViews.scoreFeatures(xl), onlyViews.scoreFeatures(x), 'the fact is in no view');
  const listBias = withStack({ coef: [1, 1, 0, 0, 0.75, 0, 0] });
  assert.ok(Math.abs(logOdds(listBias, xl) - logOdds(listBias, x) - 0.75) < 1e-9);
  const vb = (m3.header.stack!.viewBias as number[]);
  const shifted = withStack({ coef: [0.5, 1, 0, 0, 0, 0, 0], viewBias: [vb[0]! + 0.4, vb[1]!] });
  const base = withStack({ coef: [0.5, 1, 0, 0, 0, 0, 0] });
  assert.ok(Math.abs(logOdds(shifted, x) - logOdds(base, x) - 0.2) < 1e-9);
  // a corrupt header is refused, not scored as NaN
  for (const edit of [
    (h: Record<string, unknown>) => { (h.stack as { coef: unknown[] }).coef[5] = 'x'; },
    (h: Record<string, unknown>) => { (h.stack as { viewBias: unknown[] }).viewBias[0] = '1'; },
    (h: Record<string, unknown>) => { (h.stack as Record<string, unknown>).bias = null; },
    (h: Record<string, unknown>) => { h.bits = 30; },
    (h: Record<string, unknown>) => { (h.params as Record<string, unknown>).bits = 12; },
    (h: Record<string, unknown>) => { (h.params as Record<string, unknown>).norm = 'a'; },
  ]) assert.throws(() => SpamModel.deserialize(editHeader(m3.serialize(), edit)), /bad spam model|stacker/);
  // features made for one view cannot train two, nor the reverse
  const ys = Uint8Array.from([...spam.map(() => 1), ...ham.map(() => 0)]);
  assert.throws(() => trainFeatures([...spam, ...ham].map((b) => features(b, 14)), ys, { folds: 2, bits: 14 }), /header-view/);
  assert.throws(() => trainFeatures([...spam, ...ham].map((b) => features(b, 14, { views: 2 })), ys, { folds: 2, bits: 14, views: 1 }), /two views/);
  // one-view learners keep format 2 and its threshold rule
  for (const kind of ['chi', 'combo'] as const) {
    const k = train(spam, ham, { folds: 2, bits: 14, kind });
    assert.deepEqual([k.header.version, k.header.params.views, k.header.stack, k.header.params.thresholdMode], [2, 1, undefined, 'poisson'], kind);
  }
  assert.throws(() => SpamModel.deserialize(editHeader(m3.serialize(), (h) => { h.kind = 'combo'; })), /views/);
});

test('stacker: weighs the more telling view up, stays finite on separable data, and learns nothing from noise', () => {
  let s = 7;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 4294967296);
  const n = 4000;
  const ys = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const sign = (i: number): number => (ys[i] ? 1 : -1);
  // view 0 is weak (mean +-1, sd 2), view 1 strong (mean +-3, sd 2), view 2 pure noise
  const gauss = (): number => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const z0 = Float64Array.from({ length: n }, (_, i) => sign(i) + 2 * gauss());
  const z1 = Float64Array.from({ length: n }, (_, i) => 3 * sign(i) + 2 * gauss());
  const z2 = Float64Array.from({ length: n }, () => 2 * gauss());
  const st = fitStacker([z0, z1, z2], ys, 3);
  assert.ok(st.coef[1]! > 2 * st.coef[0]! && st.coef[0]! > 0, JSON.stringify(st));
  assert.ok(Math.abs(st.coef[2]!) < 0.1 * st.coef[1]!, JSON.stringify(st));
  // ham weighted 3x: the bias leans to ham
  assert.ok(st.bias < 0, JSON.stringify(st));
  // perfectly separable: large but finite, and it still separates
  const sep = fitStacker([Float64Array.from({ length: n }, (_, i) => 10 * sign(i))], ys, 3);
  assert.ok(Number.isFinite(sep.coef[0]) && Number.isFinite(sep.bias) && sep.coef[0]! > 0, JSON.stringify(sep));
  // degenerate inputs: one class only, an all-zero column: finite; a NaN: refused
  const one = fitStacker([z0, new Float64Array(n)], new Uint8Array(n), 3);
  assert.ok([...one.coef, one.bias].every(Number.isFinite) && one.bias < 0, JSON.stringify(one));
  assert.throws(() => fitStacker([Float64Array.from(z0, (v, i) => (i === 5 ? NaN : v))], ys, 3), /not all finite/);
});

test('threshold rules: FPR cap and minimax against the targets', () => {
  // 10 ham (scores 0..0.9 step 0.1, one ham at 0.95), 10 spam (0.5..0.99)
  const ham = [0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.55, 0.6, 0.65, 0.95];
  const spam = [0.5, 0.62, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.97, 0.99];
  const scores = [...ham, ...spam];
  const ys = Uint8Array.from([...ham.map(() => 0), ...spam.map(() => 1)]);
  // FPR cap 0.1 allows one FP (the 0.95 ham): threshold just above the 0.65 ham
  const f = chooseThresholdFPR(scores, ys, 0.1);
  assert.deepEqual([f.fp, f.fn], [1, 2]);
  assert.ok(f.threshold > 0.65 && f.threshold <= 0.7, String(f.threshold));
  // FPR cap 0: above every ham
  assert.deepEqual([chooseThresholdFPR(scores, ys, 0).fp, chooseThresholdFPR(scores, ys, 0).fn], [0, 8]);
  // minimax with FPR target 0.1 and FNR target 0.2: FP 1 (ratio 1), FN <= 2 (ratio <= 1)
  const m = chooseThresholdMinimax(scores, ys, 0.1, 0.2);
  assert.equal(m.fp, 1);
  assert.ok(m.fn <= 2, String(m.fn));
  // a much stricter FPR target pushes the threshold above every ham
  assert.equal(chooseThresholdMinimax(scores, ys, 0.001, 0.5).fp, 0);
});

test('threshold rules: poisson maximises the chance that both targets hold', () => {
  assert.ok(Math.abs(Math.exp(logPoissonCdf(3, 2)) - 0.857123460498547) < 1e-12);
  assert.equal(logPoissonCdf(5, 0), 0);
  assert.ok(Math.abs(Math.exp(logPoissonCdf(100, 100)) - 0.526562198529997) < 1e-9);
  assert.ok(Number.isFinite(logPoissonCdf(9, 5000)) && logPoissonCdf(9, 5000) < -4000, 'no underflow to -Infinity');
  // 1000 ham with a tail of six, 500 spam with a tail of twelve; targets FPR 0.32 % (3.2 FP),
  // FNR 1.6 % (8 FN). Minimax cannot get both ratios <= 1 and settles on FP 3 / FN 10; the
  // Poisson rule sees that FP 4 / FN 8 is likelier to meet both on a fresh sample.
  const ham = [...Array<number>(994).fill(0.1), 0.99, 0.9, 0.8, 0.7, 0.6, 0.5];
  const spamTail = [0.85, 0.75, 0.65, 0.62, 0.58, 0.55, 0.52, 0.45, 0.4, 0.35, 0.3, 0.25];
  const spam = [...Array<number>(500 - spamTail.length).fill(0.999), ...spamTail];
  const scores = [...ham, ...spam];
  const ys = Uint8Array.from([...ham.map(() => 0), ...spam.map(() => 1)]);
  const mm = chooseThresholdMinimax(scores, ys, 0.0032, 0.016);
  assert.deepEqual([mm.fp, mm.fn], [3, 10]);
  const p = chooseThresholdPoisson(scores, ys, 0.0032, 0.016);
  assert.deepEqual([p.fp, p.fn], [4, 8]);
  assert.ok(p.threshold > 0.58 && p.threshold < 0.62, String(p.threshold));
  // the same scores pooled over two CV repetitions, asked about one training set's worth
  const p2 = chooseThresholdPoisson([...scores, ...scores], Uint8Array.from([...ys, ...ys]), 0.0032, 0.016, { nHam: 1000, nSpam: 500 });
  assert.deepEqual([p2.fp, p2.fn], [8, 16]);
});

test('threshold choice and metrics', () => {
  const ys = Uint8Array.from([0, 0, 0, 1, 1, 1]);
  const t = chooseThreshold([0.1, 0.2, 0.7, 0.6, 0.8, 0.9], ys, 10);
  assert.ok(t.threshold > 0.7 && t.threshold <= 0.8, String(t.threshold));
  assert.deepEqual([t.fp, t.fn], [0, 1]);
  const m = metrics([
    { truth: 'spam', group: 'spam-1', label: 'spam', score: 0.9 },
    { truth: 'spam', group: 'spam-1', label: 'ham', score: 0.4 },
    { truth: 'ham', group: 'hard-ham-1', label: 'spam', score: 0.5 },
    { truth: 'ham', group: 'easy-ham-1', label: 'ham', score: 0.1 },
  ]);
  assert.equal(m.fpr, 0.5);
  assert.equal(m.hardHam.fp, 1);
  assert.equal(m.recall, 0.5);
  assert.equal(m.auc, 0.75);
});

test('cli: train then classify prints the TSV contract', async (t) => {
  const dir = tmpdir(t, 'postern-spam-');
  const spamDir = join(dir, 'spam'), hamDir = join(dir, 'ham'), testDir = join(dir, 'test');
  for (const d of [spamDir, hamDir, testDir]) mkdirSync(d);
  synth(30, true, 11).forEach((b, i) => writeFileSync(join(spamDir, `${i}.eml`), b));
  synth(30, false, 12).forEach((b, i) => writeFileSync(join(hamDir, `${i}.eml`), b));
  const paths: string[] = [];
  [...synth(3, true, 13), ...synth(3, false, 14)].forEach((b, i) => {
    const p = join(testDir, `${String(i).padStart(5, '0')} x.eml`); // a space in the name
    writeFileSync(p, b);
    paths.push(p);
  });
  const model = join(dir, 'model.bin');
  const quiet = { stdout: new PassThrough() };
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model, '--folds', '3', '--bits', '16'], quiet), 0);
  assert.ok(readFileSync(model).length > 0);
  const stdin = new PassThrough();
  stdin.end(paths.join('\n') + '\n');
  const stdout = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (c: Buffer) => chunks.push(c));
  assert.equal(await spamMain(['classify', '--model', model], { stdin, stdout }), 0);
  const lines = Buffer.concat(chunks).toString('utf8').split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, 6);
  lines.forEach((line, i) => {
    const f = line.split('\t');
    assert.equal(f.length, 3);
    assert.equal(f[0], paths[i]);
    assert.equal(f[1], i < 3 ? 'spam' : 'ham');
    assert.ok(Number.isFinite(Number(f[2])) && f[2] !== '');
  });
  assert.equal(await spamMain(['classify'], quiet), 64, 'usage error without --model');
  // the defaults, and the options that reproduce format version 1's tokens and threshold rule
  const h = SpamModel.deserialize(readFileSync(model)).header;
  assert.deepEqual([h.version, h.featureSet, h.views, h.params.thresholdMode, h.threshold], [3, 2, 2, 'half', 0.5]);
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model + '.v2', '--folds', '3', '--bits', '16', '--views', '1', '--threshold-mode', 'poisson'], quiet), 0);
  const v2 = SpamModel.deserialize(readFileSync(model + '.v2')).header;
  assert.deepEqual([v2.version, v2.views, v2.params.thresholdMode], [2, 1, 'poisson']);
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model + '.v2b', '--folds', '3', '--bits', '16', '--views', '1'], quiet), 0);
  assert.deepEqual(readFileSync(model + '.v2b'), readFileSync(model + '.v2'), '--views 1 alone trains format 2, threshold rule and all');
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model + '.x', '--views', '2', '--kind', 'chi'], quiet), 64);
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model + '.x', '--views', '3'], quiet), 64);
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model + '.old', '--folds', '3', '--bits', '16', '--feature-set', '1', '--threshold-mode', 'minimax'], quiet), 0);
  const old = SpamModel.deserialize(readFileSync(model + '.old')).header;
  assert.deepEqual([old.featureSet, old.params.thresholdMode], [1, 'minimax']);
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model + '.x', '--feature-set', '3'], quiet), 64);
  assert.equal(await spamMain(['train', spamDir, hamDir, '--model', model + '.x', '--threshold-mode', 'median'], quiet), 64);
  assert.equal(await spamMain(['bogus'], quiet), 64);
});

test('spam eval --seeds: a line per split and how many met both targets', async (t) => {
  const root = tmpdir(t, 'postern-spam-seeds-');
  for (const seed of [7, 8]) {
    const dir = join(root, `spam-eval-${seed}`);
    for (const [part, n0] of [['train', 40], ['test', 10]] as const) {
      for (const [label, isSpam, k] of [['spam', true, 1], ['ham', false, 2]] as const) {
        mkdirSync(join(dir, part, label), { recursive: true });
        synth(n0, isSpam, seed * 10 + k + (part === 'test' ? 5 : 0)).forEach((b, i) => writeFileSync(join(dir, part, label, `${label}.${i}.eml`), b));
      }
    }
    writeFileSync(join(dir, 'manifest.jsonl'), '');
  }
  const stdout = new PassThrough();
  const chunks: Buffer[] = [];
  stdout.on('data', (c: Buffer) => chunks.push(c));
  assert.equal(await spamMain(['eval', '--seeds', '7-8', '--splits-dir', root, '--folds', '2', '--bits', '14'], { stdout }), 0);
  const lines = Buffer.concat(chunks).toString('utf8').trim().split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0]!, /^seed\tFP\t/);
  assert.deepEqual(lines.slice(1, 3).map((l) => l.split('\t')[0]), ['7', '8']);
  assert.ok(lines.slice(1, 3).every((l) => l.endsWith('\tyes') && l.split('\t').length === 10));
  assert.match(lines[3]!, /met on 2 of 2 splits; pooled FP 0\/20 \(FPR 0\.00 %\), FN 0\/20/);
  // a bar no split can clear
  const out2 = new PassThrough();
  const c2: Buffer[] = [];
  out2.on('data', (c: Buffer) => c2.push(c));
  assert.equal(await spamMain(['eval', '--seeds', '7', '--splits-dir', root, '--folds', '2', '--bits', '14', '--min-recall', '1.01'], { stdout: out2 }), 0);
  assert.match(Buffer.concat(c2).toString('utf8'), /\tno\n[^]*met on 0 of 1 splits/);
  const quiet = { stdout: new PassThrough() };
  assert.equal(await spamMain(['eval', '--seeds', '7-x'], quiet), 64);
  assert.equal(await spamMain(['eval', '--seeds', '9-8'], quiet), 64);
});

test('headers of folded RFC 2047 words decoding into long letter runs tokenize in linear time; addresses still give their domain tokens', () => {
  // 12 KiB of base64 words a header, folded under 1,000 bytes a line, 20 Subject headers: the
  // unbounded address pattern took about 9 ms a KiB of such header (seconds here).
  const word = `=?us-ascii?B?${Buffer.from('A'.repeat(45)).toString('base64')}?=`;
  const folded = Array.from({ length: 16 }, () => Array(16).fill(word).join(' ')).join('\r\n ');
  const head = Array.from({ length: 20 }, () => `Subject: ${folded}`).join('\r\n');
  const raw = Buffer.from(`From: Ann <ann@sender.example>\r\nTo: bob@dest.example\r\n${head}\r\n\r\nbody\r\n`);
  const t0 = performance.now();
  const t = tokenize(raw);
  const ms = performance.now() - t0;
  assert.ok(ms < 1500, `tokenized in ${Math.round(ms)} ms`);
  assert.ok([...t].some((x) => x.includes('sender.example')), 'the From domain token is still there');
});
