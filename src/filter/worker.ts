// The filter worker (a Piscina task module): runs the configured filter modules over one
// message and composes the final body (trace prefix + filter headers + message) in this
// thread, so the acceptor's event loop never copies or parses message bytes for filtering.
// A filter that throws becomes a tempfail here; one that hangs is cut off by the pool's timeout.
import { move, workerData, transferableSymbol, valueSymbol } from 'piscina';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { FilterFunction, FilterResult, FilterTask, Verdict } from './messages.js';

const modulePaths: string[] = (workerData as { modules?: string[] } | undefined)?.modules ?? [];
let filters: Promise<FilterFunction[]> | null = null;

function load(): Promise<FilterFunction[]> {
  filters ??= Promise.all(
    modulePaths.map(async (p) => {
      const mod = (await import(pathToFileURL(resolve(p)).href)) as { default?: unknown };
      if (typeof mod.default !== 'function') throw new Error(`filter module ${p} has no default export function`);
      return mod.default as FilterFunction;
    }),
  );
  return filters;
}

const SEVERITY: Record<Verdict['action'], number> = { accept: 0, quarantine: 1, tempfail: 2, reject: 3 };

export default async function runFilters(task: FilterTask): Promise<FilterResult> {
  const body = Buffer.from(task.body);
  const started = performance.now();
  let verdict: Verdict = { action: 'accept' };
  let headers = '';
  try {
    for (const f of await load()) {
      const v = await f({ id: task.id, envelope: task.envelope, body });
      if (!v) continue;
      if (v.headers) headers += v.headers;
      if (v.score !== undefined) verdict.score = Math.max(verdict.score ?? -Infinity, v.score);
      if (SEVERITY[v.action] > SEVERITY[verdict.action]) verdict = { ...v, score: verdict.score ?? v.score };
      if (v.action === 'reject' || v.action === 'tempfail') break;
    }
  } catch (err) {
    verdict = { action: 'tempfail', reason: `filter error: ${(err as Error)?.message ?? String(err)}` };
  }
  const filterMs = performance.now() - started;
  const clean = headers.replace(/\r?\n(?![ \t])/g, '\r\n').replace(/(?<!\r)\n/g, '\r\n');
  const head = Buffer.from(task.prefix + clean, 'utf8');
  const out = new Uint8Array(new ArrayBuffer(head.length + body.length));
  out.set(head, 0);
  out.set(body, head.length);
  const result: FilterResult = { verdict, body: out.buffer, filterMs };
  // Transfer the composed body back instead of cloning it (Piscina's Transferable protocol).
  return move({ [transferableSymbol]: [out.buffer], [valueSymbol]: result } as never) as unknown as FilterResult;
}
