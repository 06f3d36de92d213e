// Prometheus text exposition format 0.0.4, written by hand: one `# HELP` and one `# TYPE`
// line per family, then `name{label="value"} number` samples. prom-client would add a
// registry, a dependency and per-scrape allocations for a dozen numbers we already keep.
// https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

export const PROM_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type Labels = Readonly<Record<string, string>>;
export type Sample = readonly [labels: Labels | null, value: number];

export class PromText {
  #out = '';

  /** One metric family. Counters must be named `…_total` (OpenMetrics convention). */
  family(name: string, type: 'counter' | 'gauge', help: string, samples: readonly Sample[]): this {
    this.#out += `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${type}\n`;
    for (const [labels, value] of samples) this.#out += `${name}${formatLabels(labels)} ${formatValue(value)}\n`;
    return this;
  }

  /** A histogram family: per label set, cumulative bucket counts (upper bounds `le`), sum and count. */
  histogram(name: string, help: string, le: readonly number[], series: ReadonlyArray<{ labels: Labels; buckets: readonly number[]; sum: number; count: number }>): this {
    this.#out += `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} histogram\n`;
    for (const s of series) {
      let cum = 0;
      for (let i = 0; i < le.length; i++) {
        cum += s.buckets[i] ?? 0;
        this.#out += `${name}_bucket${formatLabels({ ...s.labels, le: String(le[i]) })} ${cum}\n`;
      }
      this.#out += `${name}_bucket${formatLabels({ ...s.labels, le: '+Inf' })} ${s.count}\n`;
      this.#out += `${name}_sum${formatLabels(s.labels)} ${formatValue(s.sum)}\n${name}_count${formatLabels(s.labels)} ${s.count}\n`;
    }
    return this;
  }

  one(name: string, type: 'counter' | 'gauge', help: string, value: number): this {
    return this.family(name, type, help, [[null, value]]);
  }

  toString(): string {
    return this.#out;
  }
}

function formatLabels(labels: Labels | null): string {
  if (labels === null) return '';
  const parts: string[] = [];
  for (const k of Object.keys(labels)) {
    parts.push(`${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  }
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}
