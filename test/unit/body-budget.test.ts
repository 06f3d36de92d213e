// BodyBudget (POSTERN_MAX_BODY_MEMORY): bytes are counted as read, a holder may go on while
// the total is within the limit or its body began first, release frees and wakes the waiters
// oldest first, each once. Each client's share (POSTERN_MAX_BODY_MEMORY_PER_CLIENT): past it
// only the client's body begun first goes on, whatever room the total has; trusted holders
// have no share.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BodyBudget, type BodyHolder } from '../../src/smtp/body-budget.js';

/** A session of `client` (an address or IPv6 prefix key); trusted: inside the trusted networks. */
const holder = (client: string, trusted = false): BodyHolder => ({ clientKey: client, trusted });
/** One holder per name, each its own client. */
const holders = (...names: string[]): BodyHolder[] => names.map((n) => holder(n));

test('within the limit everyone goes on; past it only the body begun first', () => {
  const b = new BodyBudget(1000);
  const [a, c, d] = holders('a', 'c', 'd');
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
  assert.deepEqual(b.stats(), { held: 6100, peak: 6100, waiting: 0, waits: 0, shareWaits: 0, clients: 2 });
});

test('release frees the bytes; within the bound every waiter is woken once, oldest first; past it only the new first body', () => {
  const b = new BodyBudget(1000);
  const [a, c, d, e] = holders('a', 'c', 'd', 'e');
  b.add(a, 900);
  b.add(c, 200);
  b.add(d, 200);
  b.add(e, 50);
  const woken: string[] = [];
  b.wait(d, () => woken.push('d'));
  b.wait(e, () => woken.push('e'));
  b.wait(c, () => woken.push('c'));
  b.wait(c, () => woken.push('c again'), false); // taken up again after a wake-up: replaces, not counted
  assert.deepEqual(b.stats(), { held: 1350, peak: 1350, waiting: 3, waits: 3, shareWaits: 0, clients: 4 });
  b.release(c);
  assert.deepEqual(woken, [], 'still past the bound (1150) and the first body (a) is not waiting: nobody woken');
  assert.equal(b.stats().waiting, 2);
  b.release(a);
  assert.deepEqual(woken, ['d', 'e'], 'within the bound (250): every waiter, in the order they began to wait');
  assert.equal(b.mayGoOn(d) && b.mayGoOn(e), true);
  b.release(d);
  b.release(d); // twice is harmless
  b.release(e);
  assert.deepEqual(b.stats(), { held: 0, peak: 1350, waiting: 0, waits: 3, shareWaits: 0, clients: 0 });
  b.add(a, 0);
  assert.equal(b.stats().held, 0);
});

test('past the bound, the waiter whose body became the first is woken alone', () => {
  const b = new BodyBudget(1000);
  const [a, c, d] = holders('a', 'c', 'd');
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

test('a client past its share waits while another client\'s body goes on, though the total has room', () => {
  const b = new BodyBudget(1000, 250);
  const [x1, x2, x3] = [holder('192.0.2.1'), holder('192.0.2.1'), holder('192.0.2.1')];
  const y = holder('198.51.100.9');
  b.add(x1, 200);
  b.add(x2, 40);
  assert.ok(b.mayGoOn(x1) && b.mayGoOn(x2), 'X within its share (240 of 250)');
  b.add(x2, 100); // X holds 340: past its share; the total (340) is far within 1000
  assert.equal(b.mayGoOn(x2), false, 'X\'s second body waits');
  assert.equal(b.mayGoOn(x3), false, 'nor may a body X has not begun yet');
  assert.equal(b.mayGoOn(x1), true, 'X\'s body begun first goes on');
  b.add(y, 200);
  assert.equal(b.mayGoOn(y), true, 'another client goes on');
  b.wait(x2, () => {});
  b.add(y, 300); // Y past its share too (500), X's first goes on regardless
  assert.equal(b.mayGoOn(y), true, 'Y\'s only body is its first: it goes on past the share');
  assert.deepEqual(b.stats(), { held: 840, peak: 840, waiting: 1, waits: 1, shareWaits: 1, clients: 2 });
});

test('a client\'s body begun first goes on past its share to the largest message, while the total has room or it is the first of all', () => {
  const b = new BodyBudget(1000, 100);
  const y = holder('198.51.100.9');
  const [x1, x2] = [holder('192.0.2.1'), holder('192.0.2.1')];
  b.add(y, 50);
  b.add(x1, 900);
  assert.equal(b.mayGoOn(x1), true, 'past its share 9 times, within the total: X\'s first goes on');
  b.add(x2, 1);
  assert.equal(b.mayGoOn(x2), false);
  b.add(x1, 100); // total 1051: past the bound, and x1 is not the first body of all (y is)
  assert.equal(b.mayGoOn(x1), false, 'the total\'s bound still applies to a client\'s first body');
  b.release(y);
  assert.equal(b.mayGoOn(x1), true, 'the first body of all: it goes on past both bounds');
  b.add(x1, 5000);
  assert.equal(b.mayGoOn(x1), true, 'to any size');
  assert.equal(b.mayGoOn(x2), false);
});

test('a waiter held back by its client\'s share wakes when a body of its client is answered, not another\'s', () => {
  const b = new BodyBudget(10_000, 300);
  const [x1, x2, x3] = [holder('2001:db8:1::/64'), holder('2001:db8:1::/64'), holder('2001:db8:1::/64')];
  const [y1, y2] = [holder('203.0.113.5'), holder('203.0.113.5')];
  b.add(x1, 200);
  b.add(x2, 200);
  b.add(x3, 150);
  b.add(y1, 100);
  b.add(y2, 100);
  const woken: string[] = [];
  b.wait(x3, () => woken.push('x3'));
  b.wait(x2, () => woken.push('x2'));
  b.release(y1);
  assert.deepEqual(woken, [], 'another client\'s body answered: X still past its share (550)');
  assert.equal(b.stats().waiting, 2);
  b.release(x1);
  assert.deepEqual(woken, ['x2'], 'X holds 350, still past 300: only x2, X\'s body begun first now, wakes');
  assert.equal(b.stats().waiting, 1);
  assert.equal(b.mayGoOn(x2), true);
  assert.equal(b.mayGoOn(x3), false);
  b.release(x2);
  assert.deepEqual(woken, ['x2', 'x3'], 'X holds 150: x3 wakes');
  assert.equal(b.stats().waiting, 0);
  b.release(x3);
  b.release(y2);
  assert.deepEqual(b.stats(), { held: 0, peak: 750, waiting: 0, waits: 2, shareWaits: 2, clients: 0 });
});

test('a client\'s waiters wake together, in the order they waited, once it is back within its share', () => {
  const b = new BodyBudget(10_000, 300);
  const [x1, x2, x3] = [holder('192.0.2.1'), holder('192.0.2.1'), holder('192.0.2.1')];
  b.add(x1, 200);
  b.add(x2, 100);
  b.add(x3, 100);
  const y = holder('198.51.100.1');
  b.add(y, 10);
  const woken: string[] = [];
  b.wait(x3, () => woken.push('x3'));
  b.wait(x2, () => woken.push('x2'));
  b.release(y);
  assert.deepEqual(woken, [], 'another client\'s body answered: X (400) still past its share');
  b.release(x1);
  assert.deepEqual(woken, ['x3', 'x2'], 'X holds 200: both, in the order they began to wait');
});

test('within the total\'s room, the waiters of a client within its share wake in the order they began to wait; those of a client past it do not', () => {
  const b = new BodyBudget(1000, 400);
  const [x1, x2] = [holder('192.0.2.1'), holder('192.0.2.1')];
  const [y1, y2] = [holder('198.51.100.1'), holder('198.51.100.1')];
  const z = holder('203.0.113.1');
  b.add(z, 600);
  b.add(x1, 500);
  b.add(x2, 10);
  b.add(y1, 10);
  b.add(y2, 10);
  const woken: string[] = [];
  b.wait(y2, () => woken.push('y2'));
  b.wait(x2, () => woken.push('x2'));
  b.wait(y1, () => woken.push('y1'));
  assert.equal(b.stats().shareWaits, 0, 'the total was past its bound: global waits, not share waits');
  b.release(z);
  assert.deepEqual(woken, ['y2', 'y1'], 'total 530: Y\'s waiters in the order they waited; x2 stays asleep, X is past its share (510)');
  assert.equal(b.stats().waiting, 1);
});

test('past the total\'s bound only the first body of all is woken, whatever the shares; within it, the shares decide', () => {
  const b = new BodyBudget(1000, 250);
  const [a, x1, x2, x3] = [holder('192.0.2.9'), holder('192.0.2.1'), holder('192.0.2.1'), holder('192.0.2.1')];
  const y = holder('198.51.100.1');
  b.add(a, 100);
  b.add(x1, 1200);
  b.add(x2, 10);
  b.add(x3, 300);
  b.add(y, 10);
  const woken: string[] = [];
  b.wait(y, () => woken.push('y'));
  b.wait(x3, () => woken.push('x3'));
  b.wait(x2, () => woken.push('x2'));
  b.wait(x1, () => woken.push('x1'));
  b.release(a);
  assert.deepEqual(woken, ['x1'], 'x1 is the first body of all now (held 1520): only x1');
  b.release(x1);
  assert.deepEqual(woken, ['x1', 'y', 'x2'], 'within the bound (320): y, and x2 as X\'s first body; x3 waits, X is past its share (310)');
  assert.equal(b.stats().waiting, 1);
});

test('trusted clients have no share; their bytes count in the total only', () => {
  const b = new BodyBudget(1000, 100);
  const [t1, t2] = [holder('127.0.0.1', true), holder('127.0.0.1', true)];
  const u = holder('127.0.0.1'); // same key, not trusted (cannot happen in the server; shows trust is what exempts)
  const [u1, u2] = [holder('192.0.2.1'), holder('192.0.2.1')];
  b.add(t1, 300);
  b.add(t2, 300);
  assert.ok(b.mayGoOn(t1) && b.mayGoOn(t2), '600 from one trusted client, far past the share: both go on');
  assert.equal(b.stats().clients, 0);
  b.add(u1, 100);
  b.add(u2, 100);
  assert.equal(b.mayGoOn(u2), false, 'an untrusted client past the same share waits');
  b.release(u1);
  b.release(u2);
  b.add(u, 50);
  assert.equal(b.mayGoOn(u), true, 'the trusted bytes are not in the untrusted client\'s share');
  b.add(t2, 500); // the total (1150) past the bound: trusted or not, only the first body goes on
  assert.equal(b.mayGoOn(t2), false);
  assert.equal(b.mayGoOn(t1), true);
  b.release(t1);
  b.release(t2);
  b.release(u);
  assert.deepEqual(b.stats(), { held: 0, peak: 1150, waiting: 0, waits: 0, shareWaits: 0, clients: 0 });
});

test('without a share (perClient left out: the whole limit) one client may fill the total as before', () => {
  const b = new BodyBudget(1000);
  const [x1, x2] = [holder('192.0.2.1'), holder('192.0.2.1')];
  b.add(x1, 600);
  b.add(x2, 400);
  assert.ok(b.mayGoOn(x1) && b.mayGoOn(x2));
  assert.equal(b.perClient, 1000);
});
