// DeadlineQueue: many deadlines on one timer, each expiring once, in order, not before its time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineQueue, type DeadlineItem } from '../../src/lib/deadline-queue.js';
import { mulberry32 } from '../../src/lib/random.js';

/** setLo..setHi: the clock just before and just after the deadline was set (the queue reads it in between). */
interface Item extends DeadlineItem {
  name: string;
  setLo: number;
  setHi: number;
  ms: number;
}

const item = (name: string): Item => ({ name, deadlineSlot: -1, setLo: 0, setHi: 0, ms: 0 });

function recorder(): { q: DeadlineQueue<Item>; fired: Array<{ name: string; late: number }>; set(i: Item, ms: number): void } {
  const fired: Array<{ name: string; late: number }> = [];
  const q = new DeadlineQueue<Item>((i) => fired.push({ name: i.name, late: performance.now() - (i.setLo + i.ms) }));
  return {
    q,
    fired,
    set(i, ms) {
      i.setLo = performance.now();
      i.ms = ms;
      q.set(i, ms);
      i.setHi = performance.now();
    },
  };
}

test('deadlines expire in order, each once and not early; a moved deadline counts from the move', async () => {
  const r = recorder();
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(item) as [Item, Item, Item, Item];
  r.set(c, 300);
  r.set(a, 40);
  r.set(b, 100);
  r.set(d, 60);
  assert.equal(r.q.size, 4);
  r.set(d, 400); // later: the armed timer fires early for nothing and is armed again
  await sleep(20);
  r.set(a, 150); // now due after b
  await sleep(500);
  assert.deepEqual(
    r.fired.map((f) => f.name),
    ['b', 'a', 'c', 'd'],
  );
  for (const f of r.fired) assert.ok(f.late >= 0, `${f.name} expired ${-f.late} ms early`);
  assert.equal(r.q.size, 0);
  for (const i of [a, b, c, d]) assert.equal(i.deadlineSlot, -1);
});

test('a cleared deadline never expires; clearing twice or an item without one is harmless', async () => {
  const r = recorder();
  const a = item('a');
  const b = item('b');
  r.q.clear(a);
  r.set(a, 30);
  r.set(b, 50);
  r.q.clear(a);
  r.q.clear(a);
  assert.equal(a.deadlineSlot, -1);
  assert.equal(r.q.size, 1);
  r.q.clear(b);
  await sleep(100);
  assert.equal(r.fired.length, 0);
  r.set(b, 10); // the queue works again after it was emptied
  await sleep(60);
  assert.deepEqual(
    r.fired.map((f) => f.name),
    ['b'],
  );
});

test('an expiring item may set its own deadline again (as a greeting delay then the idle timeout)', async () => {
  let count = 0;
  const a = item('a');
  const q = new DeadlineQueue<Item>((i) => {
    count++;
    if (count < 3) q.set(i, 0); // 0 is taken as 1 ms: the expiry loop cannot spin
  });
  q.set(a, 5);
  await sleep(80);
  assert.equal(count, 3);
  assert.equal(q.size, 0);
});

test('random sets and clears keep the heap ordered: every item expires once, at or after its last deadline', async () => {
  const rand = mulberry32(1234);
  const r = recorder();
  const items = Array.from({ length: 300 }, (_, i) => item(`i${i}`));
  const live = new Set<Item>();
  for (let step = 0; step < 3000; step++) {
    const it = items[Math.floor(rand() * items.length)]!;
    if (rand() < 0.2) {
      r.q.clear(it);
      live.delete(it);
    } else {
      r.set(it, 20 + Math.floor(rand() * 80));
      live.add(it);
    }
  }
  assert.equal(r.q.size, live.size);
  await sleep(250);
  const names = r.fired.map((f) => f.name);
  assert.equal(new Set(names).size, names.length, 'each expired once');
  assert.deepEqual(new Set(names), new Set([...live].map((i) => i.name)));
  for (const f of r.fired) assert.ok(f.late >= 0, `${f.name} expired ${-f.late} ms early`);
  // In deadline order: each deadline is somewhere in [setLo + ms, setHi + ms] (a GC pause may
  // come between the test's clock reading and the queue's).
  const due = r.fired.map((f) => items.find((x) => x.name === f.name)!);
  for (let k = 1; k < due.length; k++) {
    const [p, c] = [due[k - 1]!, due[k]!];
    assert.ok(c.setHi + c.ms >= p.setLo + p.ms, `${c.name} expired after ${p.name} but was due before it`);
  }
  assert.equal(r.q.size, 0);
});
