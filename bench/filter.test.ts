// The filter bench's core (bench/filter.ts), checked for behaviour at a tiny size on the
// synthetic corpus (not timed): every message sent through each pool phase comes back with a
// verdict, none tempfails, and every figure the table prints is a finite number.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runFilterBench, formatResult } from './filter.js';

test('filter bench: classifier, spam pools with 1 and 2 workers and the no-op pool all give verdicts and finite figures', async () => {
  const r = await runFilterBench({ corpus: 'synthetic', seconds: 60, messages: 40, warmup: 8, workers: [1, 2], log: () => {} });
  assert.equal(r.corpus.kind, 'synthetic');
  assert.ok(r.model.fileBytes > 0 && r.model.memoryBytes > 0);
  assert.deepEqual(r.phases.map((p) => [p.workers, p.inFlight]), [[0, 1], [1, 1], [1, 128], [1, 128], [2, 2], [2, 256], [2, 256], [1, 1], [1, 128]]);
  const [classifier, ...pools] = r.phases;
  assert.equal(classifier!.messages, 40);
  assert.ok(Number.isFinite(classifier!.msgPerS) && classifier!.msgPerS > 0);
  for (const p of pools) {
    assert.equal(p.messages, 40, p.name);
    assert.equal(p.missing, 0, p.name);
    const verdicts = Object.values(p.verdicts).reduce((a, b) => a + b, 0);
    assert.equal(verdicts, 40, `${p.name}: every message got a verdict`);
    assert.equal(p.verdicts.tempfail ?? 0, 0, `${p.name}: no tempfails`);
    for (const k of ['msgPerS', 'mbPerS', 'p50TotalMs', 'p99TotalMs', 'meanTotalMs', 'meanFilterMs', 'meanHandoffMs', 'meanBatch', 'filterShare', 'peakRssMB', 'mainElu', 'cpuUsPerMsg'] as const) {
      assert.ok(Number.isFinite(p[k]) && p[k] >= 0, `${p.name}: ${k} = ${p[k]}`);
    }
    assert.ok(p.p99TotalMs >= p.p50TotalMs, p.name);
  }
  for (const p of pools.slice(0, 6)) assert.ok(Number.isFinite(p.handoffRatio) && p.meanFilterMs > 0, `${p.name}: the spam filter ran`);
  for (const p of pools) assert.ok(Number.isFinite(p.workerHandoffMs) && Number.isFinite(p.cpuHandoffMs), p.name);
  assert.equal(pools[2]!.meanBatch, 1, 'the batch-1 phase sends one message per task');
  assert.ok(pools[1]!.meanBatch > 1, `the saturated phase batches (${pools[1]!.meanBatch})`);
  const table = formatResult(r);
  assert.match(table, /\| pool 2w spam, 256 in flight \|/);
  assert.match(table, /\| pool 2w spam, 256 in flight, batch 1 \|/);
});
