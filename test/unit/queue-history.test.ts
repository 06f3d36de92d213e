// A recipient's bounded history in the queue record (records.ts pushAttempt): the last few
// attempts, each with its time and reply cut to a bound, as an appended msgpackr structure:
// records of the older forms load unchanged, without it. Real LMDB in a temp folder.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { decodeRecord, encodeRecord, HISTORY_ATTEMPTS, HISTORY_DESTINATION_CHARS, HISTORY_TEXT_CHARS, LAST_REPLY_TEXT_CHARS, historyDepth } from '../../src/queue/records.js';
import { messageView } from '../../src/http/message-view.js';
import { queueHarness, type QueueHarness } from '../helpers/queue-harness.js';

const T0 = 1_700_000_000_000;
const harness = (t: TestContext): QueueHarness => queueHarness(t, T0);
const body = Buffer.from('Subject: x\r\n\r\nx\r\n');

// A record as the code before the wait index wrote it (structure 0, recipients structure 1, no history);
// the same bytes as test/unit/queue-pool.test.ts.
const OLD_ID = '0p2f1c3ag000001q';
const OLD_RECORD_HEX =
  '40b0307032663163336167303030303031713a01a57265616479cb4279af232b200000cb4279af23745e000001cd04d2ad61406578616d706c652e6f72679241ab6240646573742e74657374a9646573742e74657374d40000d40000a770656e64696e670142d40000a5342e342e31b4636f6e6e6563742045434f4e4e52454655534544a7434f4e4e454354c3b3736d74703a3132372e302e302e313a32353235cb4279af232b20000041ac63406f746865722e74657374aa6f746865722e7465737491a74641494c555245d40000a770656e64696e6700d40000d40000d40000d40000d40000d40000d4000043a93132372e302e302e31a178d40000d40000d40000d40000d40000';

test('each attempt is kept, oldest first, with its time, code, enhanced code, text and destination; it survives a reopen and shows in the view', async (t) => {
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue({ sender: 's@a.example', recipients: [{ address: 'r@b.example' }, { address: 'x@c.example' }] }, body);
  assert.equal(q.get(id)!.recipients[0]!.history, undefined, 'nothing before the first attempt');
  await q.defer(id, ['r@b.example'], T0 + 60_000, { code: 451, enhanced: '4.7.1', text: 'greylisted', command: 'RCPT', destination: 'smtp:mx.b.example:25' });
  h.clock.t = T0 + 61_000;
  await q.settle(id, [{ address: 'r@b.example', kind: 'deferred', retryAt: T0 + 120_000, tried: false, reply: { text: 'circuit open' } }]);
  h.clock.t = T0 + 62_000;
  await q.defer(id, ['r@b.example'], T0 + 180_000, { code: 421, text: 'too busy', destination: 'smtp:mx2.b.example:25' });
  await q.close();
  const m = h.open().get(id)!;
  const r = m.recipients[0]!;
  assert.equal(r.attempts, 2);
  assert.deepEqual(r.history, [
    { at: T0, code: 451, enhanced: '4.7.1', text: 'greylisted', destination: 'smtp:mx.b.example:25' },
    { at: T0 + 62_000, code: 421, enhanced: undefined, text: 'too busy', destination: 'smtp:mx2.b.example:25' },
  ], 'a deferral without an attempt (tried: false) is not in the history');
  assert.equal(r.lastReply!.text, 'too busy', 'the last reply is kept as before');
  assert.equal(m.recipients[1]!.history, undefined, 'a recipient not tried has none');
  const v = messageView(m);
  assert.deepEqual(v.recipients[0]!.history, [
    { at: new Date(T0).toISOString(), code: 451, enhanced: '4.7.1', text: 'greylisted', destination: 'smtp:mx.b.example:25' },
    { at: new Date(T0 + 62_000).toISOString(), code: 421, enhanced: null, text: 'too busy', destination: 'smtp:mx2.b.example:25' },
  ]);
  assert.deepEqual(v.recipients[1]!.history, []);
});

test('bounded: more attempts than the bound keep the last ones; a 10 KB reply text and a long destination are cut', async (t) => {
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue({ sender: 's@a.example', recipients: [{ address: 'r@b.example' }] }, body);
  const n = HISTORY_ATTEMPTS + 3;
  for (let i = 1; i <= n; i++) {
    h.clock.t = T0 + i * 1000;
    await q.defer(id, ['r@b.example'], T0 + 3_600_000, { code: 450, text: `attempt ${i}`, destination: 'smtp:mx.b.example:25' });
  }
  let r = q.get(id)!.recipients[0]!;
  assert.equal(r.attempts, n);
  assert.deepEqual(r.history!.map((a) => a.text), Array.from({ length: HISTORY_ATTEMPTS }, (_, i) => `attempt ${n - HISTORY_ATTEMPTS + 1 + i}`));
  assert.deepEqual(r.history!.map((a) => a.at), Array.from({ length: HISTORY_ATTEMPTS }, (_, i) => T0 + (n - HISTORY_ATTEMPTS + 1 + i) * 1000));

  const sizeBefore = encodeRecord(q.get(id)!).length; // eight short attempts
  const huge = 'h'.repeat(10 * 1024);
  for (let i = 0; i < HISTORY_ATTEMPTS; i++) {
    await q.defer(id, ['r@b.example'], T0 + 3_600_000, { code: 4500 + i, enhanced: '4.'.repeat(100), text: huge, destination: 'smtp:' + 'd'.repeat(5000) });
  }
  r = q.get(id)!.recipients[0]!;
  for (const a of r.history!) {
    assert.equal(a.text.length, HISTORY_TEXT_CHARS);
    assert.ok(a.text.endsWith('…'), 'a cut text says so');
    assert.ok(a.destination!.length <= HISTORY_DESTINATION_CHARS);
    assert.ok(a.enhanced!.length <= 16);
    assert.equal(a.code, undefined, 'a code outside 0..999 is not kept');
  }
  // The history's share of the record is bounded: without it the record holds the 10 KB last
  // reply only (stored as before); with it, at most HISTORY_ATTEMPTS bounded entries more.
  const m = q.get(id)!;
  const withHistory = encodeRecord(m).length;
  const without = encodeRecord({ ...m, recipients: m.recipients.map((x) => ({ ...x, history: undefined })) }).length;
  assert.ok(withHistory - without <= HISTORY_ATTEMPTS * (HISTORY_TEXT_CHARS + HISTORY_DESTINATION_CHARS + 64), `the history takes ${withHistory - without} bytes`);
  assert.ok(withHistory - sizeBefore < 20 * 1024, 'not five copies of 10 KB');
  // The last reply itself is cut too: a hostile server's 10 KB (up to the reader's 64 KiB) is not stored whole.
  assert.equal(m.recipients[0]!.lastReply!.text.length, LAST_REPLY_TEXT_CHARS);
  assert.ok(m.recipients[0]!.lastReply!.text.endsWith('…'));
  assert.ok(withHistory < 10 * 1024, `the whole record is ${withHistory} bytes (the 10 KB text alone would pass it)`);
});

test('a cut never splits a surrogate pair', async (t) => {
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue({ sender: 's@a.example', recipients: [{ address: 'r@b.example' }] }, body);
  await q.defer(id, ['r@b.example'], T0 + 1000, { text: 'a'.repeat(HISTORY_TEXT_CHARS - 2) + '😀'.repeat(10) });
  const text = q.get(id)!.recipients[0]!.history![0]!.text;
  assert.ok(text.length <= HISTORY_TEXT_CHARS);
  assert.equal(text, 'a'.repeat(HISTORY_TEXT_CHARS - 2) + '…', 'the emoji is dropped whole');
  assert.ok(!/[\ud800-\udbff](?![\udc00-\udfff])/.test(text), 'no lone high surrogate');
});

test('the depth shrinks as recipients grow, so the record-wide history stays bounded', async (t) => {
  assert.equal(historyDepth(1), HISTORY_ATTEMPTS);
  assert.equal(historyDepth(50), 5);
  assert.equal(historyDepth(100), 2);
  assert.equal(historyDepth(250), 1);
  assert.equal(historyDepth(251), 0);
  const h = harness(t);
  const q = h.open();
  const many = Array.from({ length: 300 }, (_, i) => ({ address: `r${i}@b.example` }));
  const id = await q.enqueue({ sender: 's@a.example', recipients: many }, body);
  await q.defer(id, many.map((r) => r.address), T0 + 1000, { code: 451, text: 'later' });
  const m = q.get(id)!;
  assert.equal(m.recipients[0]!.attempts, 1);
  assert.ok(m.recipients.every((r) => r.history === undefined), 'past the budget: only the last reply');
  const hundred = await q.enqueue({ sender: 's@a.example', recipients: many.slice(0, 100) }, body);
  for (let i = 0; i < 4; i++) await q.defer(hundred, many.slice(0, 100).map((r) => r.address), T0 + 1000, { code: 451, text: `later ${i}` });
  assert.ok(q.get(hundred)!.recipients.every((r) => r.history!.length === 2 && r.history![1]!.text === 'later 3'));
});

test('records of the older forms load unchanged, without history; a tried recipient moves to the appended structure', async (t) => {
  const old = decodeRecord(Buffer.from(OLD_RECORD_HEX, 'hex'), OLD_ID);
  assert.ok(old.recipients.every((r) => r.history === undefined));
  assert.equal(encodeRecord(old).toString('hex'), OLD_RECORD_HEX, 'it re-encodes byte for byte');
  assert.deepEqual(messageView(old).recipients.map((r) => r.history), [[], []]);
  assert.equal(messageView(old).recipients[0]!.last_reply!.text, 'connect ECONNREFUSED');
  // A recipient with a history key encodes with RECIPIENT_KEYS_2 (structure 7: record id 0x47).
  const withHistory = { ...old, recipients: [{ ...old.recipients[0]!, history: [{ at: T0, code: 451, enhanced: undefined, text: 't', destination: undefined }] }, old.recipients[1]!] };
  const bytes = encodeRecord(withHistory);
  assert.ok(bytes.includes(0x47), 'the appended recipient structure is used');
  assert.deepEqual(decodeRecord(bytes, OLD_ID).recipients[0]!.history, withHistory.recipients[0]!.history);
  // A stored history of the wrong shape is a corrupt record, not a crash in the view.
  for (const bad of ['x', [{ at: 'now', text: 't' }], [{ at: T0, text: 7 }], [null], [{ at: T0, text: 't', code: '451' }]]) {
    const rec = { ...old, recipients: [{ ...old.recipients[0]!, history: bad as never }] };
    assert.throws(() => decodeRecord(encodeRecord(rec), OLD_ID), /bad recipient history/, JSON.stringify(bad));
  }

  // An old record in a real queue: the next attempt adds its history.
  const h = harness(t);
  const q = h.open();
  const id = await q.enqueue({ sender: 's@a.example', recipients: [{ address: 'r@b.example' }] }, body);
  await q.defer(id, ['r@b.example'], T0 + 1000, { code: 451, text: 'one' });
  assert.equal(q.get(id)!.recipients[0]!.history!.length, 1);
});
