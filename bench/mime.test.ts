// The MIME bench (bench/mime.ts), checked for behaviour at a tiny size on its synthetic
// messages (not timed): every parser processes every message in every round without
// throwing, finds text in all of them and decodes the same Subject as postern's extract(),
// every figure the table prints is finite and positive, and the table names each parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runMimeBench, formatMimeResult, ENTRIES } from './mime.js';

test('mime bench: postern extract(), postal-mime and mailparser each process every synthetic message, with finite figures', async () => {
  const r = await runMimeBench({ corpus: 'synthetic', messages: 10, rounds: 2, warmup: 3, log: () => {} });
  assert.equal(r.corpus.kind, 'synthetic');
  assert.equal(r.corpus.messages, 10);
  assert.ok(r.corpus.MB > 0);
  assert.deepEqual(r.entries.map((e) => e.name), ENTRIES.map((e) => e.name));
  assert.ok(r.entries.filter((e) => e.kind === 'parser').length >= 3, 'postern, postal-mime and mailparser');
  for (const e of r.entries) {
    assert.equal(e.messages, 10, e.name);
    assert.equal(e.processed, 10, `${e.name}: every message processed in every round`);
    assert.equal(e.threw, 0, `${e.name}: nothing threw`);
    assert.equal(e.roundMsgPerS.length, 2, e.name);
    for (const k of ['seconds', 'msgPerS', 'mbPerS', 'usPerMsg', 'cpuUsPerMsg'] as const) {
      assert.ok(Number.isFinite(e[k]) && e[k] > 0, `${e.name}: ${k} = ${e[k]}`);
    }
    for (const x of e.roundMsgPerS) assert.ok(Number.isFinite(x) && x > 0, `${e.name}: round msg/s ${x}`);
    if (e.kind === 'parser') {
      assert.equal(e.nonEmpty, 10, `${e.name}: text found in every message`);
      assert.equal(e.posternOnly + e.otherOnly, 0, e.name);
      assert.equal(e.sameSubject, 10, `${e.name}: the folded, encoded Subject decodes as postern's does`);
    }
  }
  const table = formatMimeResult(r);
  for (const e of r.entries) assert.ok(table.includes(`| ${e.name} |`), `the table names ${e.name}`);
  assert.match(table, /\| postern extract\(\) \|/);
  assert.match(table, /\| postal-mime 4 \|/);
  assert.match(table, /\| mailparser 3 simpleParser \|/);
  assert.match(table, /postern extract\(\) vs postal-mime 4: [\d.]+× (faster|slower)/);
});
