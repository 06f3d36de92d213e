// POST /v1/messages, structured form and campaigns, against a real node with its HTTP API on
// (POSTERN_HTTP_PORT=0): MIME composed and parsed back with postal-mime, Bcc only in the
// envelope, header injection refused in every field, per-recipient substitution, envelope
// splitting at maxRecipients.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import PostalMime from 'postal-mime';
import { startTestNode } from '../helpers/node.js';
import type { PosternNode } from '../../src/main.js';

interface Ctx {
  node: PosternNode;
  post(json: unknown): Promise<{ status: number; json: any }>;
}

async function start(t: TestContext, env: Record<string, string> = {}): Promise<Ctx> {
  const node = await startTestNode(t, { POSTERN_HTTP_PORT: '0', ...env });
  const base = `http://127.0.0.1:${node.ports.httpPort}`;
  return {
    node,
    async post(json) {
      const res = await fetch(`${base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) });
      return { status: res.status, json: await res.json() };
    },
  };
}

function body(node: PosternNode, id: string): Buffer {
  return node.queue.withBody(id, (b) => Buffer.from(b));
}

test('structured message: composed MIME parses back; Bcc only in the envelope; Date, Message-ID, Received', async (t) => {
  const c = await start(t);
  const pdf = Buffer.from([0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x10, 0x80, 0x0d, 0x0a]);
  const r = await c.post({
    from: { name: 'Sender Ñame', address: 's@sender.example' },
    to: ['r@rcpt.example', { name: 'Bob', address: 'bob@rcpt.example' }],
    cc: ['c@cc.example'],
    bcc: ['hidden@bcc.example'],
    subject: 'Héllo — structured',
    text: 'plain body\nsecond line',
    html: '<p>html <b>body</b></p>',
    headers: { 'X-Campaign-Id': 'c-42', 'Reply-To': 'reply@sender.example' },
    attachments: [{ filename: 'doc.pdf', content_base64: pdf.toString('base64'), content_type: 'application/pdf' }],
    priority: 'urgent',
  });
  assert.equal(r.status, 202, JSON.stringify(r.json));
  assert.equal(r.json.count, 1);
  assert.deepEqual(r.json.ids, [r.json.id]);
  const rec = c.node.queue.get(r.json.id)!;
  assert.equal(rec.sender, 's@sender.example');
  assert.deepEqual(rec.recipients.map((x) => x.address), ['r@rcpt.example', 'bob@rcpt.example', 'c@cc.example', 'hidden@bcc.example']);
  assert.equal(rec.priority, 0);

  const raw = body(c.node, r.json.id);
  const text = raw.toString('latin1');
  assert.match(text, /^Received: from api \(\[127\.0\.0\.1\]\)/);
  assert.doesNotMatch(text, /^bcc:/im, 'no Bcc header');
  assert.doesNotMatch(text, /hidden@bcc\.example/, 'the bcc address appears nowhere in the message');
  assert.match(text, /^MIME-Version: 1\.0\r$/m);
  assert.match(text, new RegExp(`^Message-ID: <${r.json.id}@mx\\.test\\.example>\\r$`, 'm'));
  assert.match(text, /^Date: /m);
  assert.doesNotMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'CRLF line ends only');

  const m = await PostalMime.parse(raw);
  assert.equal(m.subject, 'Héllo — structured');
  assert.equal(m.from?.address, 's@sender.example');
  assert.equal(m.from?.name, 'Sender Ñame');
  assert.deepEqual(m.to?.map((a) => a.address), ['r@rcpt.example', 'bob@rcpt.example']);
  assert.deepEqual(m.cc?.map((a) => a.address), ['c@cc.example']);
  assert.equal(m.bcc, undefined);
  assert.equal(m.text?.trim(), 'plain body\nsecond line');
  assert.equal(m.html?.trim(), '<p>html <b>body</b></p>');
  assert.equal(m.messageId, `<${r.json.id}@mx.test.example>`);
  assert.equal(m.attachments.length, 1);
  const att = m.attachments[0]!;
  assert.equal(att.filename, 'doc.pdf');
  assert.equal(att.mimeType, 'application/pdf');
  assert.ok(Buffer.from(att.content as ArrayBuffer).equals(pdf), 'attachment bytes intact');
  assert.equal(m.headers.find((h) => h.key === 'x-campaign-id')?.value, 'c-42');
  assert.equal(m.replyTo?.[0]?.address, 'reply@sender.example');
});

test('header injection: a control character in any header-bound field is a 400 naming it; nothing stored', async (t) => {
  const c = await start(t);
  const good = { from: 's@sender.example', to: ['r@rcpt.example'], subject: 'ok', text: 'body' };
  const evil = ['x\r\nBcc: victim@evil.example', 'x\nX-Evil: 1', 'x\rX-Evil: 1', 'x\u0000', 'x\u2028y', 'x\ty', 'x\u0085y'];
  const cases: [string, (e: string) => unknown, RegExp][] = [
    ['from', (e) => ({ ...good, from: `s@sender.example${e}` }), /^from: control/],
    ['from name', (e) => ({ ...good, from: { name: e, address: 's@sender.example' } }), /^from\.name: control/],
    ['to', (e) => ({ ...good, to: ['r@rcpt.example', `r2@rcpt.example${e}`] }), /^to\[1\]: control/],
    ['to name', (e) => ({ ...good, to: [{ name: e, address: 'r@rcpt.example' }] }), /^to\[0\]\.name: control/],
    ['cc', (e) => ({ ...good, cc: [`c@cc.example${e}`] }), /^cc\[0\]: control/],
    ['bcc', (e) => ({ ...good, bcc: [`b@bcc.example${e}`] }), /^bcc\[0\]: control/],
    ['subject', (e) => ({ ...good, subject: `hi${e}` }), /^subject: control/],
    ['header value', (e) => ({ ...good, headers: { 'X-Ok': `v${e}` } }), /^headers\["X-Ok"\]: control/],
    ['header name', (e) => ({ ...good, headers: { [`X-A${e}`]: 'v' } }), /^headers\[[^]*\]: control/],
    ['filename', (e) => ({ ...good, attachments: [{ filename: `a${e}.txt`, content_base64: 'QQ==' }] }), /^attachments\[0\]\.filename: control/],
    ['content_type', (e) => ({ ...good, attachments: [{ filename: 'a.txt', content_base64: 'QQ==', content_type: `text/plain${e}` }] }), /^attachments\[0\]\.content_type: control/],
    ['substitution value', (e) => ({ ...good, subject: 'Hi {{name}}', substitutions: { 'r@rcpt.example': { name: `Ann${e}` } } }), /^substitutions\["r@rcpt\.example"\]\.name: control/],
  ];
  for (const [name, make, msg] of cases) {
    for (const e of evil) {
      const r = await c.post(make(e));
      assert.equal(r.status, 400, `${name} ${JSON.stringify(e)}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.code, 'PST_HTTP_BAD_FIELD');
      assert.match(r.json.error.message, msg, `${name} ${JSON.stringify(e)}`);
    }
  }
  const others: [string, unknown, RegExp][] = [
    ['header name with colon', { ...good, headers: { 'X-A: b': 'v' } }, /not an RFC 5322 field name/],
    ['header name with space', { ...good, headers: { 'X A': 'v' } }, /not an RFC 5322 field name/],
    ['non-ASCII header name', { ...good, headers: { 'X-Ä': 'v' } }, /not an RFC 5322 field name/],
    ['Content-Type override', { ...good, headers: { 'content-type': 'text/html' } }, /cannot be set/],
    ['MIME-Version override', { ...good, headers: { 'MIME-Version': '2.0' } }, /cannot be set/],
    ['Content-Transfer-Encoding override', { ...good, headers: { 'Content-Transfer-Encoding': '8bit' } }, /cannot be set/],
    ['Bcc through headers', { ...good, headers: { Bcc: 'x@y.example' } }, /cannot be set/],
    ['content_type with parameters', { ...good, attachments: [{ filename: 'a', content_base64: 'QQ==', content_type: 'text/plain; charset=x' }] }, /MIME type/],
    ['bad base64', { ...good, attachments: [{ filename: 'a', content_base64: '!!' }] }, /not valid base64/],
    ['header value not a string', { ...good, headers: { 'X-N': 1 } }, /must be a string/],
    ['bad address', { ...good, cc: ['<c@cc.example>'] }, /^cc\[0\]: .* not a mailbox/],
    ['substitution for a stranger', { ...good, substitutions: { 'x@y.example': { name: 'X' } } }, /not one of the to addresses/],
    ['cc with substitutions', { ...good, cc: ['c@cc.example'], substitutions: {} }, /cc and bcc are not allowed/],
    ['unknown field', { ...good, sbject: 'x' }, /^sbject: unknown field/],
    ['no from', { to: good.to, text: 'x' }, /^from: required/],
  ];
  for (const [name, json, msg] of others) {
    const r = await c.post(json);
    assert.equal(r.status, 400, `${name}: ${JSON.stringify(r.json)}`);
    assert.match(r.json.error.message, msg, name);
  }
  assert.equal(c.node.queue.counts().total, 0, 'nothing stored');
});

test('limits: 10,000 recipients per request, attachments bounded by maxMessageBytes', async (t) => {
  const c = await start(t, { POSTERN_MAX_MESSAGE_BYTES: '16K' });
  const to = Array.from({ length: 10_001 }, (_, i) => `u${i}@x.example`);
  const r = await c.post({ from: 's@sender.example', to, subject: 's', text: 't' });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /10001 recipients.*at most 10000/);
  const big = await c.post({ from: 's@sender.example', to: ['r@rcpt.example'], subject: 's', attachments: [{ filename: 'a.bin', content_base64: Buffer.alloc(20_000).toString('base64') }] });
  assert.equal(big.status, 413);
  assert.equal(big.json.error.code, 'PST_HTTP_MESSAGE_TOO_LARGE');
  // Under the content bound but over once encoded (base64 grows by 4/3): refused after composing.
  const enc = await c.post({ from: 's@sender.example', to: ['r@rcpt.example'], subject: 's', attachments: [{ filename: 'a.bin', content_base64: Buffer.alloc(15_000).toString('base64') }] });
  assert.equal(enc.status, 413);
  assert.equal(c.node.queue.counts().total, 0);
});

test('campaign: 1,000 recipients with substitutions → 1,000 messages, each with its own values', async (t) => {
  const c = await start(t);
  const n = 1000;
  const to = Array.from({ length: n }, (_, i) => `user${i}@rcpt${i % 7}.example`);
  const substitutions = Object.fromEntries(to.map((a, i) => [a, { name: `Name-${i}`, n: i }]));
  substitutions[to[1]!] = { name: '<Tom & "Jerry">', n: 1 };
  const r = await c.post({
    from: 'news@sender.example',
    to,
    subject: 'Hello {{name}} (#{{ n }})',
    text: 'Dear {{name}}, you are {{address}}.{{missing}}',
    html: '<p>Dear {{name}}</p>',
    substitutions,
    priority: 'bulk',
  });
  assert.equal(r.status, 202, JSON.stringify(r.json));
  assert.equal(r.json.count, n);
  assert.equal(r.json.ids.length, n);
  assert.equal(new Set(r.json.ids).size, n);
  assert.equal(c.node.queue.counts().total, n);
  for (let i = 0; i < n; i++) {
    const id = r.json.ids[i] as string;
    const rec = c.node.queue.get(id)!;
    assert.deepEqual(rec.recipients.map((x) => x.address), [to[i]]);
    if (i % 50 !== 1 && i !== 999) continue; // parse a sample; the envelope of every one is checked
    const m = await PostalMime.parse(body(c.node, id));
    const name = i === 1 ? '<Tom & "Jerry">' : `Name-${i}`;
    assert.equal(m.subject, `Hello ${name} (#${i})`);
    assert.equal(m.text?.trim(), `Dear ${name}, you are ${to[i]}.`);
    assert.deepEqual(m.to?.map((a) => a.address), [to[i]], 'To names that recipient alone');
    assert.equal(m.messageId, `<${id}@mx.test.example>`);
    if (i === 1) assert.equal(m.html?.trim(), '<p>Dear &lt;Tom &amp; &quot;Jerry&quot;&gt;</p>', 'HTML-escaped in html');
  }
});

test('no substitutions: 2,500 recipients with maxRecipients 1000 → 3 envelopes sharing one body', async (t) => {
  const c = await start(t, { POSTERN_MAX_RECIPIENTS: '1000' });
  const to = Array.from({ length: 2400 }, (_, i) => `u${i}@x${i % 3}.example`);
  const bcc = Array.from({ length: 100 }, (_, i) => `b${i}@bcc.example`);
  const r = await c.post({ from: 's@sender.example', to: [...to, to[0]], bcc, subject: 'all', text: 'one message' });
  assert.equal(r.status, 202, JSON.stringify(r.json));
  assert.equal(r.json.count, 3);
  assert.equal(r.json.id, undefined);
  const sizes = r.json.ids.map((id: string) => c.node.queue.get(id)!.recipients.length);
  assert.deepEqual(sizes, [1000, 1000, 500], 'the duplicate is dropped');
  const all = r.json.ids.flatMap((id: string) => c.node.queue.get(id)!.recipients.map((x) => x.address));
  assert.deepEqual(all, [...to, ...bcc]);
  const bodies = r.json.ids.map((id: string) => body(c.node, id).toString('latin1').replace(/^Received:[^]*?\r\n(?![ \t])/, ''));
  assert.equal(bodies[0], bodies[1]);
  assert.equal(bodies[1], bodies[2]);
  assert.doesNotMatch(bodies[0], /bcc\.example/);
  const m = await PostalMime.parse(bodies[0]);
  assert.equal(m.subject, 'all');
  assert.equal(m.to?.length, 2401, 'the To header is as given');
});

test('raw injection still answers { id } (and ids, count)', async (t) => {
  const c = await start(t);
  const r = await c.post({ from: 's@sender.example', to: ['r@rcpt.example'], raw: 'Subject: x\r\n\r\nbody\r\n' });
  assert.equal(r.status, 202);
  assert.deepEqual(r.json, { id: r.json.id, ids: [r.json.id], count: 1 });
});

test('hostile JSON shapes are refused before JSON.parse: nesting past 32, more than 600,000 values, more than 50 variables a recipient; brackets, commas and escaped quotes inside strings do not count', async (t) => {
  const c = await start(t);
  const base = `http://127.0.0.1:${c.node.ports.httpPort}`;
  const raw = async (text: string): Promise<{ status: number; json: any }> => {
    const res = await fetch(`${base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
    return { status: res.status, json: await res.json() };
  };
  const deep = await raw(`{"from":${'['.repeat(40)}${']'.repeat(40)}}`);
  assert.equal(deep.status, 400);
  assert.match(deep.json.error.message, /nested deeper than 32/);
  const t0 = Date.now();
  const wide = await raw(`{"to":[${'1,'.repeat(700_000)}1]}`);
  assert.equal(wide.status, 400);
  assert.match(wide.json.error.message, /more than 600000 values/);
  assert.ok(Date.now() - t0 < 10_000);
  // The same characters inside a string (a raw message) are content, not structure.
  const ok = await c.post({ from: 'a@sender.example', to: ['b@rcpt.example'], raw: `Subject: x\r\n\r\n${'[{,"\\'.repeat(200_000)}\r\n` });
  assert.equal(ok.status, 202, JSON.stringify(ok.json));
  const vars = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`v${i}`, 'x']));
  const many = await c.post({ from: 'a@sender.example', to: ['b@rcpt.example'], subject: 's', text: 't', substitutions: { 'b@rcpt.example': vars } });
  assert.equal(many.status, 400);
  assert.match(many.json.error.message, /51 variables, at most 50/);
  assert.equal(c.node.queue.counts().total, 1, 'only the raw message was queued');
});

test('a large campaign is composed and queued in batches: the node keeps answering meanwhile', async (t) => {
  const c = await start(t);
  const base = `http://127.0.0.1:${c.node.ports.httpPort}`;
  const n = 400;
  const to = Array.from({ length: n }, (_, i) => `u${i}@rcpt.example`);
  const text = `Hello {{name}},\n${'lorem ipsum dolor sit amet '.repeat(10_000)}\n`; // ≈ 270 KB a copy
  let polling = true;
  let worst = 0;
  const poll = (async () => {
    while (polling) {
      const t0 = performance.now();
      await (await fetch(`${base}/health`)).arrayBuffer();
      worst = Math.max(worst, performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const r = await c.post({ from: 'news@sender.example', to, subject: 'Hi {{name}}', text, substitutions: Object.fromEntries(to.map((a, i) => [a, { name: `N${i}` }])) });
  polling = false;
  await poll;
  assert.equal(r.status, 202, JSON.stringify(r.json).slice(0, 300));
  assert.equal(r.json.count, n);
  assert.deepEqual(r.json.ids.map((id: string) => c.node.queue.get(id)!.recipients[0]!.address), to, 'in request order');
  assert.ok(worst < 1500, `/health waited ${Math.round(worst)} ms at worst while ${n} copies were composed`);
});
