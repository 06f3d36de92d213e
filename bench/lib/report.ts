// The suite's report: per (scenario, variant, target) the median of the runs with min–max, the
// ratio postern/peer, as a markdown table; the raw measurements as JSON; and a hand-written SVG
// (no dependencies): grouped bars of throughput by scenario/variant and target (log scale, as
// the figures span 1 MiB messages to 1 KiB ones), and a line chart of throughput against client
// connections (the concurrency scenario, log–log).
import type { Measurement, SuiteTarget } from '../scenarios/common.js';

export interface Row {
  scenario: string;
  variant: string;
  x: number | null;
  target: SuiteTarget;
  runs: number;
  okRuns: number;
  median: number;
  min: number;
  max: number;
  mbPerSec: number | null;
  cpuMsPerMsg: number | null;
  peakMemMiB: number | null;
  /** postern's median / this target's (peers only). */
  ratio: number | null;
  errors: string[];
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function med(xs: (number | null)[]): number | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return v.length ? median(v) : null;
}

export function summarize(ms: Measurement[]): Row[] {
  const keys: string[] = [];
  const groups = new Map<string, Measurement[]>();
  for (const m of ms) {
    const k = `${m.scenario}\0${m.variant}\0${m.target}`;
    if (!groups.has(k)) {
      groups.set(k, []);
      keys.push(k);
    }
    groups.get(k)!.push(m);
  }
  const rows: Row[] = keys.map((k) => {
    const g = groups.get(k)!;
    const ok = g.filter((m) => m.ok);
    const use = ok.length ? ok : g;
    const rates = use.map((m) => m.msgsPerSec);
    return {
      scenario: g[0]!.scenario,
      variant: g[0]!.variant,
      x: g[0]!.x,
      target: g[0]!.target,
      runs: g.length,
      okRuns: ok.length,
      median: median(rates),
      min: Math.min(...rates),
      max: Math.max(...rates),
      mbPerSec: med(use.map((m) => m.mbPerSec)),
      cpuMsPerMsg: med(use.map((m) => m.cpuMsPerMsg)),
      peakMemMiB: med(use.map((m) => m.peakMemMiB)),
      ratio: null,
      errors: [...new Set(g.filter((m) => !m.ok).map((m) => (m.error ?? 'failed').replace(/\s+/g, ' ').trim()))].slice(0, 3),
    };
  });
  for (const r of rows) {
    if (r.target === 'postern') continue;
    const p = rows.find((q) => q.target === 'postern' && q.scenario === r.scenario && q.variant === r.variant);
    if (p && r.median > 0) r.ratio = p.median / r.median;
  }
  return rows;
}

const f = (x: number | null, d = 0) => (x === null || !Number.isFinite(x) ? '–' : x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));

export function markdown(rows: Row[]): string {
  const head = ['scenario', 'variant', 'target', 'msg/s median (min–max)', 'postern/peer', 'MB/s', 'CPU ms/msg', 'peak mem MiB', 'runs ok'];
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => ' --- ').join('|')}|`];
  for (const r of rows) {
    out.push(
      `| ${r.scenario} | ${r.variant || '—'} | ${r.target} | **${f(r.median)}** (${f(r.min)}–${f(r.max)}) | ${r.ratio === null ? '' : `${f(r.ratio, 2)}×`} | ${f(r.mbPerSec, 1)} | ${f(r.cpuMsPerMsg, 3)} | ${f(r.peakMemMiB)} | ${r.okRuns}/${r.runs}${r.errors.length ? ` (${r.errors.join('; ').slice(0, 160).replace(/\|/g, '/')})` : ''} |`,
    );
  }
  return out.join('\n');
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const COLORS: Record<string, string> = { postern: '#1f77b4', postfix: '#d62728', haraka: '#2ca02c', 'smtp-server': '#ff7f0e' };
const color = (t: string) => COLORS[t] ?? '#7f7f7f';

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

/** The chart: grouped bars (every scenario/variant) and, if the concurrency scenario ran, a line chart. */
export function svg(rows: Row[], title: string): string {
  const targets = [...new Set(rows.map((r) => r.target))];
  const groups = [...new Set(rows.map((r) => `${r.scenario}${r.variant ? ' ' + r.variant : ''}`))];
  const barW = 14;
  const groupW = Math.max(48, targets.length * barW + 18);
  const left = 70;
  const W = Math.max(640, left + groups.length * groupW + 30);
  const barTop = 60;
  const barH = 260;
  const parts: string[] = [];
  const pos = rows.map((r) => r.median).filter((x) => x > 0 && Number.isFinite(x));
  const lo = pos.length ? 10 ** Math.floor(Math.log10(Math.min(...pos))) : 1;
  const hi = pos.length ? 10 ** Math.ceil(Math.log10(Math.max(...rows.map((r) => (Number.isFinite(r.max) ? r.max : 0)), ...pos) * 1.0001)) : 10;
  const y = (v: number) => barTop + barH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1)) * barH;
  parts.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  parts.push(`<text x="${W / 2}" y="44" text-anchor="middle" font-size="12">throughput by scenario and target: median msg/s (requests/s for http), log scale; whiskers min–max</text>`);
  for (const t of logTicks(lo, hi)) {
    parts.push(`<line x1="${left}" x2="${W - 20}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" font-size="11">${f(t)}</text>`);
  }
  groups.forEach((g, gi) => {
    const gx = left + gi * groupW + 9;
    targets.forEach((t, ti) => {
      const r = rows.find((q) => `${q.scenario}${q.variant ? ' ' + q.variant : ''}` === g && q.target === t);
      if (!r || !(r.median > 0)) return;
      const x = gx + ti * barW;
      const top = y(r.median);
      parts.push(`<rect x="${x}" y="${top.toFixed(1)}" width="${barW - 2}" height="${(barTop + barH - top).toFixed(1)}" fill="${color(t)}"><title>${escapeXml(`${g} ${t}: ${f(r.median)} (${f(r.min)}–${f(r.max)})`)}</title></rect>`);
      if (Number.isFinite(r.min) && Number.isFinite(r.max) && r.max > r.min) parts.push(`<line x1="${x + (barW - 2) / 2}" x2="${x + (barW - 2) / 2}" y1="${y(r.max).toFixed(1)}" y2="${y(Math.max(r.min, lo)).toFixed(1)}" stroke="#000"/>`);
    });
    const lx = gx + (targets.length * barW) / 2;
    parts.push(`<text x="${lx}" y="${barTop + barH + 12}" font-size="10" text-anchor="end" transform="rotate(-40 ${lx} ${barTop + barH + 12})">${escapeXml(g)}</text>`);
  });
  parts.push(`<line x1="${left}" x2="${left}" y1="${barTop}" y2="${barTop + barH}" stroke="#000"/>`);
  parts.push(`<line x1="${left}" x2="${W - 20}" y1="${barTop + barH}" y2="${barTop + barH}" stroke="#000"/>`);
  const legendY = barTop + barH + 110;
  targets.forEach((t, i) => {
    parts.push(`<rect x="${left + i * 120}" y="${legendY - 10}" width="12" height="12" fill="${color(t)}"/><text x="${left + i * 120 + 16}" y="${legendY}" font-size="12">${escapeXml(t)}</text>`);
  });
  let H = legendY + 20;

  const conc = rows.filter((r) => r.scenario === 'concurrency' && r.x !== null && r.x > 0 && r.median > 0);
  if (conc.length > 0) {
    const top = H + 40;
    const h = 220;
    const lw = Math.min(W - left - 40, 560);
    const xs = [...new Set(conc.map((r) => r.x!))].sort((a, b) => a - b);
    const xlo = Math.min(...xs);
    const xhi = Math.max(...xs);
    const cl = 10 ** Math.floor(Math.log10(Math.min(...conc.map((r) => r.median))));
    const ch = 10 ** Math.ceil(Math.log10(Math.max(...conc.map((r) => r.median)) * 1.0001));
    const px = (v: number) => left + (xhi > xlo ? ((Math.log10(v) - Math.log10(xlo)) / (Math.log10(xhi) - Math.log10(xlo))) * lw : lw / 2);
    const py = (v: number) => top + h - ((Math.log10(v) - Math.log10(cl)) / (Math.log10(ch) - Math.log10(cl) || 1)) * h;
    parts.push(`<text x="${left + lw / 2}" y="${top - 14}" text-anchor="middle" font-size="13" font-weight="bold">throughput against client connections (concurrency scenario, log–log)</text>`);
    for (const t of logTicks(cl, ch)) {
      parts.push(`<line x1="${left}" x2="${left + lw}" y1="${py(t).toFixed(1)}" y2="${py(t).toFixed(1)}" stroke="#ddd"/>`);
      parts.push(`<text x="${left - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end" font-size="11">${f(t)}</text>`);
    }
    for (const xv of xs) parts.push(`<text x="${px(xv).toFixed(1)}" y="${top + h + 16}" text-anchor="middle" font-size="11">${xv}</text>`);
    parts.push(`<text x="${left + lw / 2}" y="${top + h + 34}" text-anchor="middle" font-size="12">client connections</text>`);
    parts.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + h}" stroke="#000"/><line x1="${left}" x2="${left + lw}" y1="${top + h}" y2="${top + h}" stroke="#000"/>`);
    for (const t of targets) {
      const pts = conc.filter((r) => r.target === t).sort((a, b) => a.x! - b.x!);
      if (!pts.length) continue;
      parts.push(`<polyline fill="none" stroke="${color(t)}" stroke-width="2" points="${pts.map((r) => `${px(r.x!).toFixed(1)},${py(r.median).toFixed(1)}`).join(' ')}"/>`);
      for (const r of pts) parts.push(`<circle cx="${px(r.x!).toFixed(1)}" cy="${py(r.median).toFixed(1)}" r="3" fill="${color(t)}"><title>${escapeXml(`${t}, ${r.x} connections: ${f(r.median)} msg/s`)}</title></circle>`);
    }
    H = top + h + 50;
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}
