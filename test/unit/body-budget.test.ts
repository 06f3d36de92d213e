// BodyBudget (POSTERN_MAX_BODY_MEMORY): bytes are counted as read, a holder may go on while
// the total is within the limit or its body began first, release frees and wakes the waiters
// oldest first, each once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyBudget } from '../../src/smtp/body-budget.js';

test('within the limit everyone goes on; past it only the body begun first', () => {
  const b = new BodyBudget(1000);
  const [a, c, d] = [{}, {}, {}];
  b.add(a, 600);
  b.add(c, 300);
  assert.ok(b.mayGoOn(a) && b.mayGoOn(c), 'at 900 of 1000');
  b.add(c, 200); // read anyway: the bytes are in memory
  assert.equal(b.stats().held, 1100);
  assert.equal(b.mayGoOn(c), false, 'past the limit, not first');
  assert.equal(b.mayGoOn(a), true, 'the body begun first always goes on');
  assert.equal(b.mayGoOn(d), false, 'nor a body not begun yet');
  b.add(a, 5000);
  assert.equal(b.mayGoOn(a), true, 'a message of any allowed size fits: the first goes on past the limit');
  assert.deepEqual(b.stats(), { held: 6100, peak: 6100, waiting: 0, waits: 0 });
});

test('release frees the bytes; within the bound every waiter is woken once, oldest first; past it only the new first body', () => {
  const b = new BodyBudget(1000);
  const [a, c, d, e] = [{}, {}, {}, {}];
  b.add(a, 900);
  b.add(c, 200);
  b.add(d, 200);
  b.add(e, 50);
  const woken: string[] = [];
  b.wait(d, () => woken.push('d'));
  b.wait(e, () => woken.push('e'));
  b.wait(c, () => woken.push('c'));
  b.wait(c, () => woken.push('c again'), false); // taken up again after a wake-up: replaces, not counted
  assert.deepEqual(b.stats(), { held: 1350, peak: 1350, waiting: 3, waits: 3 });
  b.release(c);
  assert.deepEqual(woken, [], 'still past the bound (1150) and the first body (a) is not waiting: nobody woken');
  assert.equal(b.stats().waiting, 2);
  b.release(a);
  assert.deepEqual(woken, ['d', 'e'], 'within the bound (250): every waiter, in the order they began to wait');
  assert.equal(b.mayGoOn(d) && b.mayGoOn(e), true);
  b.release(d);
  b.release(d); // twice is harmless
  b.release(e);
  assert.deepEqual(b.stats(), { held: 0, peak: 1350, waiting: 0, waits: 3 });
  b.add(a, 0);
  assert.equal(b.stats().held, 0);
});

test('past the bound, the waiter whose body became the first is woken alone', () => {
  const b = new BodyBudget(1000);
  const [a, c, d] = [{}, {}, {}];
  b.add(a, 100);
  b.add(c, 1200);
  b.add(d, 10);
  const woken: string[] = [];
  b.wait(c, () => woken.push('c'));
  b.wait(d, () => woken.push('d'));
  b.release(a);
  assert.deepEqual(woken, ['c'], 'c is first now (held 1210 > 1000): only c');
  assert.equal(b.mayGoOn(c), true);
  assert.equal(b.mayGoOn(d), false);
  assert.equal(b.stats().waiting, 1);
});
