// The users file's password checks: a wrong password and an unknown user cost the same scrypt,
// and the checks pending at once are bounded (a flood of AUTH lines must not queue CPU work
// without end on libuv's thread pool).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UserDb, hashPassword, MAX_PENDING_VERIFY } from '../../src/auth/users.js';

test('password checks pending at once are bounded: past MAX_PENDING_VERIFY the answer is null at once, no scrypt run', async () => {
  const db = UserDb.parse(`alice:${await hashPassword('right')}\n`);
  const n = MAX_PENDING_VERIFY + 8;
  const started = Date.now();
  const all = Array.from({ length: n }, (_, i) => db.tryVerify(i % 2 === 0 ? 'alice' : 'mallory', 'wrong'));
  const results = await Promise.all(all);
  assert.equal(results.filter((r) => r === null).length, 8, 'the 8 past the bound are refused');
  assert.ok(results.slice(0, MAX_PENDING_VERIFY).every((r) => r === false), 'the first ones were checked');
  assert.ok(Date.now() - started < 60_000);
  // Once they have settled, checks run again.
  assert.equal(await db.tryVerify('alice', 'right'), true);
  assert.equal(await db.tryVerify('alice', 'wrong'), false);
});
