// The spam evaluation on a small slice of the SpamAssassin corpus: the seed-1 split's first
// messages of each class, trained and classified in-process. The full seed-1 evaluation is
// `npm run bench:spam`. .ci/run fetches the corpus; the split is made by the evaluation kit's
// splitter (SPAM_TOOLS), and the test skips, saying why, when neither split nor splitter is here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from '../helpers/tmpdir.js';
import { evaluateSplit } from '../../src/filter/spam/cli.js';

const SPLIT = '/tmp/spam-eval';
const DATA = '/tmp/spamdata';
// The splitter belongs to the spam evaluation kit, which is not part of this repository:
// SPAM_TOOLS names its folder. Without it the test runs on a split already made, or skips.
const SPLIT_SCRIPT = process.env.SPAM_TOOLS === undefined ? null : join(process.env.SPAM_TOOLS, 'split.mjs');

function ensureSplit(): boolean {
  if (existsSync(join(SPLIT, 'split.json'))) return true;
  if (SPLIT_SCRIPT === null || !existsSync(DATA) || !existsSync(SPLIT_SCRIPT)) return false;
  execFileSync(process.execPath, [SPLIT_SCRIPT, '--seed', '1'], { stdio: 'ignore' });
  return existsSync(join(SPLIT, 'split.json'));
}

const available = ensureSplit();

test('spam eval on a slice of the seed-1 split', { skip: available ? false : `no seed-1 split in ${SPLIT} and no splitter to make it (set SPAM_TOOLS to the spam evaluation kit's folder; the corpus goes in ${DATA})` }, (t) => {
  const slice = tmpdir(t, 'postern-spam-slice-');
  const take = { train: { spam: 250, ham: 500 }, test: { spam: 120, ham: 250 } } as const;
  for (const part of ['train', 'test'] as const) {
    for (const cls of ['spam', 'ham'] as const) {
      const from = join(SPLIT, part, cls);
      const to = join(slice, part, cls);
      mkdirSync(to, { recursive: true });
      // Every group is represented: take files round-robin by group prefix.
      const byGroup = new Map<string, string[]>();
      for (const f of readdirSync(from).sort()) {
        const g = f.slice(0, f.indexOf('.'));
        byGroup.set(g, [...(byGroup.get(g) ?? []), f]);
      }
      const picked: string[] = [];
      for (let i = 0; picked.length < take[part][cls]; i++) {
        let any = false;
        for (const files of byGroup.values()) {
          if (i < files.length && picked.length < take[part][cls]) {
            picked.push(files[i]!);
            any = true;
          }
        }
        if (!any) break;
      }
      for (const f of picked) copyFileSync(join(from, f), join(to, f));
    }
  }
  const r = evaluateSplit(slice);
  t.diagnostic(`slice: FPR ${(r.metrics.fpr * 100).toFixed(2)} %, recall ${(r.metrics.recall * 100).toFixed(2)} %, F1 ${r.metrics.f1.toFixed(4)}, AUC ${r.metrics.auc.toFixed(4)}`);
  assert.ok(r.metrics.auc > 0.98, `AUC ${r.metrics.auc}`);
  assert.ok(r.metrics.recall > 0.9, `recall ${r.metrics.recall}`);
  assert.ok(r.metrics.fpr < 0.03, `FPR ${r.metrics.fpr}`);
});
