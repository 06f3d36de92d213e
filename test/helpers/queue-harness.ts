// A queue in a temporary folder on a test clock: queues opened through the harness share the
// folder and the clock (a reopen is a restart) and are closed before the folder is removed.
import type { TestContext } from 'node:test';
import { Queue, type QueueOptions } from '../../src/queue/store.js';
import { tmpdir } from './tmpdir.js';

export interface QueueHarness {
  dir: string;
  clock: { t: number };
  open(extra?: Partial<QueueOptions>): Queue;
}

export function queueHarness(t: TestContext, t0: number): QueueHarness {
  const queues: Queue[] = [];
  t.after(async () => {
    for (const q of queues) await q.close();
  });
  const dir = tmpdir(t);
  const clock = { t: t0 };
  return {
    dir,
    clock,
    open(extra = {}) {
      const q = Queue.open({ path: dir, now: () => clock.t, ...extra });
      queues.push(q);
      return q;
    },
  };
}
