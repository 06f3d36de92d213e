// The metrics `postern spam eval` reports (docs/spam.md), defined as the evaluation kit's
// harness computes them, so the in-process figures and the kit's agree.

export interface Item {
  truth: 'spam' | 'ham';
  group: string;
  label: 'spam' | 'ham' | 'unsure';
  score: number;
}

export interface Metrics {
  n: number;
  nSpam: number;
  nHam: number;
  tp: number;
  fn: number;
  fp: number;
  tn: number;
  fpr: number;
  hardHam: { n: number; fp: number; fpr: number };
  recall: number;
  precision: number;
  f1: number;
  accuracy: number;
  strictAccuracy: number;
  unsureRate: number;
  auc: number;
}

export function auc(items: Item[]): number {
  const s = items.slice().sort((a, b) => a.score - b.score);
  let rankSumSpam = 0, nSpam = 0;
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j < s.length && s[j]!.score === s[i]!.score) j++;
    const avg = (i + 1 + j) / 2;
    for (let k = i; k < j; k++) if (s[k]!.truth === 'spam') { rankSumSpam += avg; nSpam++; }
    i = j;
  }
  const nHam = s.length - nSpam;
  if (!nSpam || !nHam) return NaN;
  return (rankSumSpam - (nSpam * (nSpam + 1)) / 2) / (nSpam * nHam);
}

export function metrics(items: Item[]): Metrics {
  let tp = 0, fp = 0, nSpam = 0, nHam = 0, unsure = 0, strict = 0, hardN = 0, hardFp = 0;
  for (const it of items) {
    if (it.label === 'unsure') unsure++;
    if (it.label === it.truth) strict++;
    if (it.truth === 'spam') { nSpam++; if (it.label === 'spam') tp++; }
    else {
      nHam++;
      if (it.label === 'spam') fp++;
      if (it.group.startsWith('hard-ham')) { hardN++; if (it.label === 'spam') hardFp++; }
    }
  }
  const fn = nSpam - tp, tn = nHam - fp, n = nSpam + nHam;
  const precision = tp + fp ? tp / (tp + fp) : 0;
  const recall = nSpam ? tp / nSpam : 0;
  return {
    n, nSpam, nHam, tp, fn, fp, tn,
    fpr: nHam ? fp / nHam : 0,
    hardHam: { n: hardN, fp: hardFp, fpr: hardN ? hardFp / hardN : 0 },
    recall, precision,
    f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0,
    accuracy: n ? (tp + tn) / n : 0,
    strictAccuracy: n ? strict / n : 0,
    unsureRate: n ? unsure / n : 0,
    auc: auc(items),
  };
}

const pct = (x: number, d = 2): string => (100 * x).toFixed(d) + '%';

/** One table row per named result. */
export function formatTable(rows: Array<[string, Metrics]>): string {
  const head = ['classifier', 'ham FPR', 'hard-ham FPR', 'spam recall', 'precision', 'F1', 'accuracy', 'strict acc', 'unsure', 'AUC'];
  const body = rows.map(([name, m]) => [
    name,
    `${pct(m.fpr)} (${m.fp}/${m.nHam})`,
    `${pct(m.hardHam.fpr)} (${m.hardHam.fp}/${m.hardHam.n})`,
    `${pct(m.recall)} (${m.tp}/${m.nSpam})`,
    pct(m.precision),
    m.f1.toFixed(4),
    pct(m.accuracy),
    pct(m.strictAccuracy),
    pct(m.unsureRate),
    m.auc.toFixed(4),
  ]);
  const all = [head, ...body];
  const w = head.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(w[i]!)).join(' | ') + ' |';
  return [line(head), '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|', ...body.map(line)].join('\n');
}
