// The message browser's API against a real node (LMDB queue, HTTP on a real socket): the
// filters of GET /v1/queue/messages (id, sender, recipient, domain, state), cursor pages under
// a filter, the summary's fields (queue_state, recipient_addresses, last_reply), every bad
// parameter refused with a 400 naming it, GET /v1/queue/messages/:id/headers, and each
// recipient's history in GET /v1/queue/messages/:id.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode } from '../helpers/node.js';

const TOKEN = 'browse-token-0123456789';

interface Browse {
  call(method: string, path: string, json?: unknown): Promise<{ status: number; json: any }>;
  inject(from: string, to: string[], extra?: Record<string, unknown>): Promise<string>;
  ids(query: string): Promise<string[]>;
}

async function start(t: TestContext): Promise<Browse> {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: TOKEN });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const b: Browse = {
    async call(method, path, json) {
      const headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` };
      if (json !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(base + path, { method, headers, ...(json !== undefined ? { body: JSON.stringify(json) } : {}) });
      const text = await res.text();
      return { status: res.status, json: text === '' ? null : JSON.parse(text) };
    },
    async inject(from, to, extra = {}) {
      const r = await b.call('POST', '/v1/messages', { from, to, raw: 'Subject: browse\r\n\r\nhello\r\n', ...extra });
      assert.equal(r.status, 202, JSON.stringify(r.json));
      return r.json.id as string;
    },
    async ids(query) {
      const r = await b.call('GET', `/v1/queue/messages?${query}`);
      assert.equal(r.status, 200, `${query}: ${JSON.stringify(r.json)}`);
      return r.json.messages.map((m: { id: string }) => m.id);
    },
  };
  return b;
}

test('filters: state, sender (substring, <>), recipient, domain (pending only), id (prefix or whole)', async (t) => {
  const b = await start(t);
  const later = new Date(Date.now() + 3_600_000).toISOString();
  const a1 = await b.inject('Alice@Shop.example', ['bob@x.test', 'carol@y.test']);
  const a2 = await b.inject('alice@shop.example', ['dave@y.test'], { send_at: later });
  const n1 = await b.inject('', ['erin@x.test']);
  const z1 = await b.inject('zed@other.example', ['Frank@Z.test', 'gina@x.test']);
  assert.equal((await b.call('POST', `/v1/queue/messages/${z1}/hold`)).status, 200);
  // x.test's recipient of a1 fails (deleted by administrator): a1 keeps carol@y.test pending.
  const del = await b.call('DELETE', '/v1/queue/destinations/x.test');
  assert.equal(del.status, 200, JSON.stringify(del.json));
  assert.equal(del.json.recipients, 3);

  assert.deepEqual(await b.ids(''), [a1, a2, z1], 'n1 had only x.test: removed');
  const n2 = await b.inject('', ['hal@q.test']);
  assert.deepEqual(await b.ids('state=held'), [z1]);
  assert.deepEqual(await b.ids('state=scheduled'), [a2]);
  assert.deepEqual(await b.ids('state=ready'), [a1, n2]);
  assert.deepEqual(await b.ids('state=leased'), []);
  assert.deepEqual(await b.ids('sender=ALICE'), [a1, a2], 'case-insensitive substring');
  assert.deepEqual(await b.ids('sender=%40shop.example'), [a1, a2]);
  assert.deepEqual(await b.ids('sender=%3C%3E'), [n2], '<> is the null sender');
  assert.deepEqual(await b.ids('recipient=frank%40z'), [z1]);
  assert.deepEqual(await b.ids('recipient=x.test'), [a1, z1], 'any recipient, final ones too');
  assert.deepEqual(await b.ids('domain=y.test'), [a1, a2]);
  assert.deepEqual(await b.ids('domain=X.TEST.'), [], 'no pending recipient left in x.test');
  assert.deepEqual(await b.ids('domain=z.test'), [z1]);
  assert.deepEqual(await b.ids(`id=${a2}`), [a2], 'a whole id');
  assert.deepEqual(await b.ids(`id=${a2.toUpperCase()}`), [a2]);
  assert.deepEqual(await b.ids(`id=${a1.slice(0, 4)}`), [a1, a2, z1, n2], 'a prefix every id shares');
  assert.deepEqual(await b.ids(`id=${n1}`), [], 'removed');
  assert.deepEqual(await b.ids('sender=alice&state=scheduled&domain=y.test'), [a2], 'filters combine');
  assert.deepEqual(await b.ids('sender=alice&state=held'), []);
  assert.equal(n1 < n2, true);

  // The summary: the list state, the first recipients, the latest reply.
  const all = await b.call('GET', '/v1/queue/messages');
  const byId = new Map<string, any>(all.json.messages.map((m: any) => [m.id, m]));
  assert.equal(byId.get(a2).queue_state, 'scheduled');
  assert.equal(byId.get(a2).state, 'ready', 'state keeps the stored value');
  assert.equal(byId.get(z1).queue_state, 'held');
  assert.deepEqual(byId.get(z1).recipient_addresses, ['Frank@Z.test', 'gina@x.test']);
  assert.equal(byId.get(a1).recipients, 2);
  assert.equal(byId.get(a1).pending, 1);
  assert.equal(byId.get(a1).last_reply.text, 'deleted by administrator');
  assert.equal(byId.get(a1).last_reply.code, 550);
  assert.equal(byId.get(a2).last_reply, null);
  assert.equal(byId.get(n2).sender, '');
  assert.equal(all.json.scanned, 4);
  assert.equal(all.json.scan_limited, false);
  assert.equal(all.json.next, null);
  // The full view carries queue_state too.
  assert.equal((await b.call('GET', `/v1/queue/messages/${a2}`)).json.queue_state, 'scheduled');
});

test('pages: a filtered listing walks every match once, in order, by the next cursor', async (t) => {
  const b = await start(t);
  const want: string[] = [];
  for (let i = 0; i < 7; i++) {
    const id = await b.inject(i % 2 === 0 ? `even${i}@p.example` : `odd${i}@p.example`, [`r${i}@many.test`, 'a@b.test', 'c@d.test', 'e@f.test']);
    if (i % 2 === 0) want.push(id);
  }
  const got: string[] = [];
  let after: string | null = null;
  let pages = 0;
  do {
    const r: { status: number; json: any } = await b.call('GET', `/v1/queue/messages?sender=even&limit=2${after ? `&after=${after}` : ''}`);
    assert.equal(r.status, 200);
    assert.ok(r.json.messages.length <= 2);
    assert.equal(r.json.truncated, r.json.next !== null);
    for (const m of r.json.messages) {
      got.push(m.id);
      assert.equal(m.recipients, 4);
      assert.equal(m.recipient_addresses.length, 3, 'the summary names the first three');
    }
    after = r.json.next;
    pages++;
  } while (after !== null && pages < 10);
  assert.deepEqual(got, want);
  assert.equal(pages, 2, '4 matches in pages of 2: the second page ends the walk');
  // A cursor with an id prefix before it starts at the prefix; after it, at the cursor.
  assert.deepEqual(await b.ids(`id=${want[0]}&after=0000000000000000`), [want[0]]);
  assert.deepEqual(await b.ids(`sender=even&after=${want[1]}`), want.slice(2));
});

test('every bad parameter is a 400 with a JSON reason naming it', async (t) => {
  const b = await start(t);
  await b.inject('a@b.example', ['c@d.test']);
  const cases: Array<[string, RegExp]> = [
    ['limit=0', /^limit/],
    ['limit=1001', /^limit/],
    ['limit=ten', /^limit/],
    ['after=zzzz', /^after/],
    [`after=${'0'.repeat(33)}`, /^after/],
    ['after=', /^after/],
    ['id=', /^id/],
    ['id=w', /^id/],
    [`id=${'0'.repeat(33)}`, /^id/],
    ['id=ab%20', /^id/],
    ['sender=', /^sender/],
    [`sender=${'a'.repeat(257)}`, /^sender/],
    ['sender=a%0d%0ab', /^sender/],
    ['recipient=', /^recipient/],
    ['recipient=x%00y', /^recipient/],
    ['domain=', /^domain/],
    ['domain=a%40b.test', /^domain/],
    ['domain=a%20b', /^domain/],
    [`domain=${'d'.repeat(256)}`, /^domain/],
    ['state=deferred', /^state: must be one of ready, scheduled, leased, held/],
    ['state=HELD', /^state/],
    ['status=held', /^status: unknown parameter/],
    ['state=held&state=ready', /^state: given more than once/],
  ];
  for (const [q, why] of cases) {
    const r = await b.call('GET', `/v1/queue/messages?${q}`);
    assert.equal(r.status, 400, `${q}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.error.code, 'PST_HTTP_BAD_FIELD', q);
    assert.match(r.json.error.message, why, q);
  }
  assert.equal((await b.call('GET', '/v1/queue/messages?limit=1000&state=ready&sender=a&recipient=c&domain=d.test&id=0')).status, 200, 'all of them, valid');
});

test('GET /v1/queue/messages/:id/headers: the fields unfolded, hostile text as it is, 404s', async (t) => {
  const b = await start(t);
  const hostile = '<script>alert(1)</script> "><img src=x onerror=alert(2)>';
  const raw = `From: "${hostile}" <a@b.example>\r\nSubject: ${hostile}\r\nX-Folded: one\r\n\ttwo\r\nbroken line\r\n\r\nbody: Not: a header\r\n`;
  const id = await b.inject('a@b.example', ['c@d.test'], { raw });
  const r = await b.call('GET', `/v1/queue/messages/${id}/headers`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.id, id);
  assert.equal(r.json.truncated, false);
  const fields = r.json.headers as Array<{ name: string; value: string }>;
  assert.equal(fields[0]!.name, 'Received', 'the Received header the API prepended');
  assert.deepEqual(fields.slice(1), [
    { name: 'From', value: `"${hostile}" <a@b.example>` },
    { name: 'Subject', value: hostile },
    { name: 'X-Folded', value: 'one\ttwo' },
    { name: '', value: 'broken line' },
  ]);
  assert.equal((await b.call('GET', '/v1/queue/messages/0000000000000000/headers')).status, 404);
  assert.equal((await b.call('GET', '/v1/queue/messages/not-an-id/headers')).status, 404);
  assert.equal((await b.call('POST', `/v1/queue/messages/${id}/headers`)).status, 405);
});

test('GET /v1/queue/messages/:id: each recipient\'s history of attempts, oldest first, bounded, hostile text as it is', async (t) => {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', POSTERN_API_TOKEN: TOKEN });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  const get = async (id: string) => {
    const res = await fetch(`${base}/v1/queue/messages/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    return (await res.json()) as any;
  };
  const q = node.queue;
  const id = await q.enqueue({ sender: 's@a.example', recipients: [{ address: 'r@b.example' }, { address: 'x@c.example' }] }, Buffer.from('Subject: h\r\n\r\nh\r\n'));
  const hostile = '<img src=x onerror=alert(1)>\x1b[2J';
  for (let i = 1; i <= 7; i++) {
    await q.defer(id, ['r@b.example'], Date.now() + 3_600_000, { code: 451, enhanced: '4.7.1', text: `${hostile} try ${i}`, command: 'RCPT', destination: 'smtp:mx.b.example:25' });
  }
  await q.defer(id, ['r@b.example'], Date.now() + 3_600_000, { code: 452, text: 'y'.repeat(10 * 1024), destination: 'smtp:mx.b.example:25' });
  const v = await get(id);
  const [r, x] = v.recipients;
  assert.equal(r.attempts, 8);
  assert.equal(r.history.length, 5, 'the last five of eight attempts');
  assert.deepEqual(r.history.slice(0, 4).map((a: any) => a.text), [4, 5, 6, 7].map((i) => `${hostile} try ${i}`), 'oldest first, the text as the server sent it');
  assert.deepEqual(Object.keys(r.history[0]).sort(), ['at', 'code', 'destination', 'enhanced', 'text']);
  assert.equal(r.history[0].code, 451);
  assert.equal(r.history[0].enhanced, '4.7.1');
  assert.equal(r.history[0].destination, 'smtp:mx.b.example:25');
  assert.ok(!Number.isNaN(Date.parse(r.history[0].at)));
  const last = r.history[4];
  assert.equal(last.code, 452);
  assert.equal(last.enhanced, null);
  assert.equal(last.text.length, 256, 'a 10 KB reply is cut in the history');
  assert.ok(last.text.endsWith('…'));
  assert.equal(r.last_reply.text.length, 2048, 'the last reply is cut at LAST_REPLY_TEXT_CHARS');
  assert.ok(r.last_reply.text.endsWith('…'));
  assert.deepEqual(x.history, [], 'not tried yet');
});
