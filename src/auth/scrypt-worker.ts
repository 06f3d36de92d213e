// The thread side of password-checker.ts: derives one scrypt key at a time, synchronously,
// and compares it with the stored one in constant time. Synchronous on purpose: this thread
// exists only for it, and the asynchronous scrypt would hand the work to libuv's thread pool,
// the one the checker keeps it out of.
import { parentPort } from 'node:worker_threads';
import { scryptSync, timingSafeEqual } from 'node:crypto';
import type { ScryptJob, ScryptAnswer } from './password-checker.js';
import { SCRYPT_MAXMEM } from './users.js';
import { failure, success } from '../lib/result.js';

parentPort!.on('message', (job: ScryptJob) => {
  let answer: ScryptAnswer;
  try {
    const expected = Buffer.from(job.expected);
    const key = scryptSync(Buffer.from(job.password, 'utf8'), Buffer.from(job.salt), expected.length, { N: job.N, r: job.r, p: job.p, maxmem: SCRYPT_MAXMEM });
    answer = success(timingSafeEqual(key, expected));
  } catch (err) {
    answer = failure(err instanceof Error ? err.message : String(err));
  }
  parentPort!.postMessage(answer);
});
