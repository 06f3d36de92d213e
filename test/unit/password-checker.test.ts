// The AUTH password checker (src/auth/password-checker.ts) with real threads: right and wrong
// passwords, the concurrency cap, the bounded queue ('busy' past it), checks of sessions that
// went skipped, and close().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PasswordChecker } from '../../src/auth/password-checker.js';
import { hashPassword } from '../../src/auth/users.js';

test('verify: the right password is ok, a wrong one or a malformed hash is bad', async (t) => {
  const c = new PasswordChecker({ concurrency: 2, maxQueue: 10 });
  t.after(() => c.close());
  const h = await hashPassword('s3cret');
  assert.equal(await c.verify('s3cret', h), 'ok');
  assert.equal(await c.verify('S3cret', h), 'bad');
  assert.equal(await c.verify('s3cret', 'scrypt$garbage'), 'bad');
  assert.equal(c.checks, 2, 'a malformed hash runs no check');
});

test('at most `concurrency` checks run at once; past the queue, busy at once', async (t) => {
  const c = new PasswordChecker({ concurrency: 2, maxQueue: 3 });
  t.after(() => c.close());
  const h = await hashPassword('pw');
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => c.verify(i === 0 ? 'pw' : 'wrong', h)));
  // Two start at once, three wait, three are refused without running.
  assert.deepEqual(results, ['ok', 'bad', 'bad', 'bad', 'bad', 'busy', 'busy', 'busy']);
  assert.equal(c.peakRunning, 2);
  assert.equal(c.checks, 5);
  assert.equal(c.running, 0);
  assert.equal(c.queued, 0);
});

test('a check whose asker is gone by its turn is skipped', async (t) => {
  const c = new PasswordChecker({ concurrency: 1, maxQueue: 10 });
  t.after(() => c.close());
  const h = await hashPassword('pw');
  let gone = false;
  const first = c.verify('pw', h);
  const second = c.verify('pw', h, () => gone);
  gone = true;
  assert.equal(await first, 'ok');
  assert.equal(await second, 'busy');
  assert.equal(c.checks, 1);
});

test('close: waiting checks answer busy, later ones too', async () => {
  const c = new PasswordChecker({ concurrency: 1, maxQueue: 10 });
  const h = await hashPassword('pw');
  const running = assert.rejects(c.verify('pw', h), /closed/);
  const waiting = c.verify('pw', h);
  await c.close();
  await running;
  assert.equal(await waiting, 'busy');
  assert.equal(await c.verify('pw', h), 'busy');
});
