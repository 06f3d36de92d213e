// Polling for the tests: wait until a condition holds, bounded in time, and say what was
// awaited (plus any diagnostic the caller can give) when it never does. One definition for
// every test, so a timeout reads the same everywhere.
export interface WaitForOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Time between two checks (default 20 ms). */
  intervalMs?: number;
  /** More to say on timeout (called once, then). */
  diag?: () => string;
}

/**
 * Check `pred` every `intervalMs` until it holds; throw after `timeoutMs` naming `what`.
 * The third argument is the timeout in ms, or options.
 */
export async function waitFor(what: string, pred: () => boolean | Promise<boolean>, options: number | WaitForOptions = {}): Promise<void> {
  const o = typeof options === 'number' ? { timeoutMs: options } : options;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${o.diag ? `: ${o.diag()}` : ''}`);
    await sleep(o.intervalMs ?? 20);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
