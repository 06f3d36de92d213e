// The process and runtime families of /metrics, named as Prometheus client libraries export
// them by default (prom-client's collectDefaultMetrics): CPU, memory, heap, open descriptors,
// GC pauses by kind, event-loop lag, plus postern_build_info. Lag and GC are cumulative
// histograms: a scrape reads them and never resets them, so rate() and histogram_quantile()
// work across scrapes and several scrapers see the same series.
import { constants, PerformanceObserver, performance } from 'node:perf_hooks';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PromText } from './prom-text.js';

/** How often the lag sampler's timer is due; its lateness is one sample. */
export const LOOP_LAG_SAMPLE_MS = 10;
export const LOOP_LAG_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** prom-client's nodejs_gc_duration_seconds buckets. */
export const GC_BUCKETS_S = [0.001, 0.01, 0.1, 1, 2, 5] as const;
const GC_KINDS: Readonly<Record<number, string>> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};
const START_TIME_S = Math.round(Date.now() / 1000 - process.uptime());

/** Counts per bucket (not cumulative: PromText.histogram sums them), sum and count; only grows. */
export class Histogram {
  readonly buckets: number[];
  sum = 0;
  count = 0;
  constructor(readonly le: readonly number[]) {
    this.buckets = le.map(() => 0);
  }

  observe(v: number): void {
    const i = this.le.findIndex((b) => v <= b);
    if (i >= 0) this.buckets[i]!++;
    this.sum += v;
    this.count++;
  }
}

/** The package's version, from the nearest package.json named postern above this file. */
export function posternVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++, dir = dirname(dir)) {
    const p = join(dir, 'package.json');
    if (!existsSync(p)) continue;
    try {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'postern' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not ours or unreadable: keep looking up
    }
  }
  return 'unknown';
}

export class ProcessMetrics {
  readonly loopLag = new Histogram(LOOP_LAG_BUCKETS_S);
  readonly gc = new Map(Object.values(GC_KINDS).map((k) => [k, new Histogram(GC_BUCKETS_S)]));
  readonly version = posternVersion();
  readonly #maxFds = readMaxFds();
  #timer: NodeJS.Timeout | null = null;
  #observer: PerformanceObserver | null = null;

  /**
   * Samples the loop with a timer rather than reading monitorEventLoopDelay(): that one is a
   * percentile tracker to be reset between reads, and its buckets cannot be read out.
   */
  start(): void {
    if (this.#timer) return;
    let due = performance.now() + LOOP_LAG_SAMPLE_MS;
    const timer = setTimeout(() => {
      const now = performance.now();
      this.loopLag.observe(Math.max(0, now - due) / 1000);
      due = now + LOOP_LAG_SAMPLE_MS;
      timer.refresh();
    }, LOOP_LAG_SAMPLE_MS);
    this.#timer = timer.unref();
    this.#observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = GC_KINDS[(e as { detail?: { kind?: number } }).detail?.kind ?? -1];
        if (kind !== undefined) this.gc.get(kind)!.observe(e.duration / 1000);
      }
    });
    this.#observer.observe({ entryTypes: ['gc'] });
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#observer?.disconnect();
    this.#timer = null;
    this.#observer = null;
  }

  render(p: PromText): void {
    p.family('postern_build_info', 'gauge', 'Always 1; the postern and Node.js versions as labels.', [[{ version: this.version, node: process.version }, 1]]);
    const cpu = process.cpuUsage();
    p.one('process_cpu_user_seconds_total', 'counter', 'User CPU time spent in seconds.', cpu.user / 1e6);
    p.one('process_cpu_system_seconds_total', 'counter', 'System CPU time spent in seconds.', cpu.system / 1e6);
    p.one('process_cpu_seconds_total', 'counter', 'User and system CPU time spent in seconds.', (cpu.user + cpu.system) / 1e6);
    p.one('process_start_time_seconds', 'gauge', 'Start time of the process since the epoch in seconds.', START_TIME_S);
    const mem = process.memoryUsage();
    p.one('process_resident_memory_bytes', 'gauge', 'Resident set size in bytes.', mem.rss);
    const status = readProc('/proc/self/status');
    const vm = (field: string): number | null => {
      const m = status === null ? null : new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
      return m ? Number(m[1]) * 1024 : null;
    };
    const virt = vm('VmSize');
    const data = vm('VmData');
    if (virt !== null) p.one('process_virtual_memory_bytes', 'gauge', 'Virtual memory size in bytes.', virt);
    if (data !== null) p.one('process_heap_bytes', 'gauge', 'Process heap (data segment) size in bytes.', data);
    const fds = openFds();
    if (fds !== null) p.one('process_open_fds', 'gauge', 'Number of open file descriptors.', fds);
    if (this.#maxFds !== null) p.one('process_max_fds', 'gauge', 'Maximum number of open file descriptors.', this.#maxFds);
    p.one('nodejs_heap_size_total_bytes', 'gauge', 'Process heap size from Node.js in bytes.', mem.heapTotal);
    p.one('nodejs_heap_size_used_bytes', 'gauge', 'Process heap size used from Node.js in bytes.', mem.heapUsed);
    p.one('nodejs_external_memory_bytes', 'gauge', 'Node.js external memory size in bytes.', mem.external);
    p.histogram('nodejs_gc_duration_seconds', 'Garbage collection pauses by kind.', GC_BUCKETS_S, [...this.gc].map(([kind, h]) => ({ labels: { kind }, buckets: h.buckets, sum: h.sum, count: h.count })));
    const l = this.loopLag;
    p.histogram('nodejs_eventloop_lag_seconds', `Lateness of a timer due every ${LOOP_LAG_SAMPLE_MS} ms: how long ready work waited for the event loop.`, LOOP_LAG_BUCKETS_S, [{ labels: {}, buckets: l.buckets, sum: l.sum, count: l.count }]);
  }
}

function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null; // not Linux
  }
}

function openFds(): number | null {
  try {
    return readdirSync('/proc/self/fd').length - 1; // less the descriptor of the listing itself
  } catch {
    return null;
  }
}

function readMaxFds(): number | null {
  const m = /^Max open files\s+(\d+)/m.exec(readProc('/proc/self/limits') ?? '');
  return m ? Number(m[1]) : null;
}
