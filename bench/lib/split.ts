// The SpamAssassin split on disk (made by the spam evaluation kit's split.mjs) as the filter benches use it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { listFiles } from '../../src/filter/spam/cli.js';

/** Whether every one of the split's sub-folders (e.g. 'test/spam') exists. */
export function haveSplit(split: string, ...dirs: string[]): boolean {
  return dirs.every((d) => existsSync(join(split, d)));
}

/** Every message under split/dir, in the split's (sorted) order. */
export function readSplit(split: string, dir: string): Buffer[] {
  return listFiles(join(split, dir)).map((p) => readFileSync(p));
}

/**
 * The split's test messages, ham and spam interleaved (so every stretch of a run, and a
 * truncated corpus, holds both), at most `limit` of them.
 */
export function interleavedTest(split: string, limit = Infinity): { messages: Buffer[]; spam: number; ham: number } {
  const ts = readSplit(split, 'test/spam'), th = readSplit(split, 'test/ham');
  const messages: Buffer[] = [];
  let spam = 0, ham = 0;
  for (let i = 0; i < Math.max(ts.length, th.length) && messages.length < limit; i++) {
    if (i < th.length) { messages.push(th[i]!); ham++; }
    if (i < ts.length && messages.length < limit) { messages.push(ts[i]!); spam++; }
  }
  return { messages, spam, ham };
}
