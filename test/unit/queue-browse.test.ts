// The message browser's bounded scan (http/queue-browse.ts) over a real LMDB queue: a rare
// match behind many non-matching records costs at most maxScan reads per page, the cursor
// goes on where the scan stopped, and following it finds every match exactly once; an id
// prefix ends the scan at the first id past it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { queueHarness } from '../helpers/queue-harness.js';
import { browsePage, parseBrowseQuery, scanStart, type BrowseQuery } from '../../src/http/queue-browse.js';
import type { MessageRecord, Queue } from '../../src/queue/store.js';

const T0 = Date.UTC(2026, 0, 5, 12);

function query(qs: string): BrowseQuery {
  const r = parseBrowseQuery(new URL(`http://x/v1/queue/messages?${qs}`));
  assert.ok(r.ok, JSON.stringify(r));
  return r.value;
}

/** The queue's records, counting how many the scan pulled. */
function counted(q: Queue, bq: BrowseQuery): { records: Iterable<MessageRecord>; read: () => number } {
  let n = 0;
  const from = scanStart(bq);
  const it = q.scan(from.after, from.start);
  return {
    records: (function* () {
      for (const r of it) {
        n++;
        yield r;
      }
    })(),
    read: () => n,
  };
}

test('a rare match costs at most maxScan reads a page; the cursor walks to every match once', async (t) => {
  const h = queueHarness(t, T0);
  const q = h.open();
  const ids: string[] = [];
  for (let i = 0; i < 95; i++) {
    const sender = i === 12 || i === 61 || i === 94 ? `needle${i}@rare.example` : `hay${i}@common.example`;
    ids.push(await q.enqueue({ sender, recipients: [{ address: `r${i}@d.test` }] }, Buffer.from('Subject: x\r\n\r\nb\r\n')));
  }
  const found: string[] = [];
  let after: string | undefined;
  let requests = 0;
  let totalRead = 0;
  for (;;) {
    const bq = query(`sender=needle&limit=5${after ? `&after=${after}` : ''}`);
    const src = counted(q, bq);
    const p = browsePage(src.records, bq, T0, 20);
    requests++;
    assert.ok(src.read() <= 20, `request ${requests} read ${src.read()} records`);
    assert.equal(p.scanned, src.read());
    totalRead += src.read();
    found.push(...p.messages.map((m) => m.id));
    if (p.next === null) break;
    assert.equal(p.scanLimited, true, 'a short page with a cursor: the scan bound was reached');
    after = p.next;
    assert.ok(requests < 20);
  }
  assert.deepEqual(found, [ids[12], ids[61], ids[94]]);
  assert.equal(requests, 5, '95 records in scans of 20');
  assert.equal(totalRead, 95, 'each record read once over the walk');

  // Without a bound the whole queue is read for one page: what the bound prevents.
  const bq = query('sender=needle&limit=5');
  const src = counted(q, bq);
  assert.equal(browsePage(src.records, bq, T0, Infinity).messages.length, 3);
  assert.equal(src.read(), 95);
});

test('a full page stops the scan at one record past it; an id prefix stops at the first id past it', async (t) => {
  const h = queueHarness(t, T0);
  const q = h.open();
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) {
    h.clock.t = T0 + i * 1000; // ids differ in their time part
    ids.push(await q.enqueue({ sender: 's@x.example', recipients: [{ address: 'r@d.test' }] }, Buffer.from('b\r\n')));
  }
  let bq = query('limit=4');
  let src = counted(q, bq);
  let p = browsePage(src.records, bq, T0, 1000);
  assert.deepEqual(p.messages.map((m) => m.id), ids.slice(0, 4));
  assert.equal(p.next, ids[3]);
  assert.equal(src.read(), 5, 'the page and one more to know there is more');
  assert.equal(p.scanned, 5, 'scanned counts every record read');

  bq = query(`id=${ids[7]}`);
  src = counted(q, bq);
  p = browsePage(src.records, bq, T0, 1000);
  assert.deepEqual(p.messages.map((m) => m.id), [ids[7]]);
  assert.equal(p.next, null);
  assert.equal(src.read(), 2, 'starts at the id, stops at the next one');
  assert.equal(p.scanned, 2);
});
