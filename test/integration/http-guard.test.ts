// What a web page open in a local user's browser can no longer make the HTTP API do: DNS
// rebinding (a foreign Host), cross-site form posts and fetches (Origin, Sec-Fetch-Site, a
// Content-Type other than JSON). Requests are sent with node:http so Host can be set freely.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { startTestNode } from '../helpers/node.js';
import { startHttpServer } from '../../src/http/server.js';
import { silentLogger } from '../../src/log/logger.js';
import type { Config } from '../../src/config/schema.js';
import type { PosternNode } from '../../src/main.js';

const TOKEN = 'guard-test-token-0123456789';

interface Reply {
  status: number;
  json: any;
}

async function startApi(t: TestContext, over: Partial<Config> = {}): Promise<{ node: PosternNode; port: number }> {
  let server: Awaited<ReturnType<typeof startHttpServer>> | null = null;
  t.after(() => server?.close());
  const node = await startTestNode(t);
  server = await startHttpServer({
    config: { ...node.config, httpHost: '127.0.0.1', httpPort: 0, apiToken: '', ...over },
    queue: node.queue,
    log: silentLogger(),
    smtpCounters: () => node.ctx.counters,
    delivery: () => null,
    ready: () => true,
  });
  return { node, port: server.port };
}

function call(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json: unknown = text;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON (metrics, the dashboard)
        }
        resolve({ status: res.statusCode!, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const MESSAGE = JSON.stringify({ from: 'a@sender.example', to: ['b@rcpt.example'], raw: 'Subject: x\r\n\r\nhi\r\n' });
const json = { 'content-type': 'application/json' };

async function queueOne(node: PosternNode): Promise<string> {
  const id = node.queue.reserveId();
  await node.queue.enqueue({ sender: 'a@sender.example', recipients: [{ address: 'b@rcpt.example' }] }, [Buffer.from('Subject: x\r\n\r\nhi\r\n')], id);
  return id;
}

test('without a token, a foreign Host (DNS rebinding) is refused before anything runs', async (t) => {
  const { node, port } = await startApi(t);
  const evil = await call(port, 'POST', '/v1/messages', { ...json, host: 'rebind.evil.example' }, MESSAGE);
  assert.equal(evil.status, 403);
  assert.equal(evil.json.error.code, 'PST_HTTP_HOST_NOT_ALLOWED');
  assert.match(evil.json.error.message, /POSTERN_HTTP_ALLOWED_HOSTS/);
  assert.equal(node.queue.counts().total, 0, 'nothing queued');
  // Reading is refused too (the page could read the answers once rebound).
  for (const path of ['/v1/stats', '/metrics', '/v1/queue/messages', '/nothing']) {
    assert.equal((await call(port, 'GET', path, { host: `rebind.evil.example:${port}` })).status, 403, path);
  }
  // Names that merely start or end like an accepted one.
  for (const host of ['localhost.evil.example', '127.0.0.1.evil.example', 'evil-localhost']) {
    assert.equal((await call(port, 'GET', '/v1/stats', { host })).status, 403, host);
  }
  // Userinfo and paths in Host are malformed, not a way around the check.
  assert.equal((await call(port, 'GET', '/v1/stats', { host: 'evil.example@127.0.0.1' })).status, 400);
  assert.equal((await call(port, 'GET', '/v1/stats', { host: '127.0.0.1/x' })).status, 400);

  // IP literals and localhost, at any port (ssh tunnels and port mappings change it).
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, '127.0.0.2:9999', 'localhost.']) {
    assert.equal((await call(port, 'GET', '/v1/stats', { host })).status, 200, host);
  }
  const okPost = await call(port, 'POST', '/v1/messages', { ...json, host: `localhost:${port}` }, MESSAGE);
  assert.equal(okPost.status, 202, JSON.stringify(okPost.json));
  assert.equal(node.queue.counts().total, 1);
});

test('POSTERN_HTTP_ALLOWED_HOSTS adds names; with a token the Host is checked only once it is set', async (t) => {
  const listed = await startApi(t, { httpAllowedHosts: ['mail.example.test'] });
  assert.equal((await call(listed.port, 'GET', '/v1/stats', { host: `mail.example.test:${listed.port}` })).status, 200);
  assert.equal((await call(listed.port, 'GET', '/v1/stats', { host: 'MAIL.example.test' })).status, 200);
  assert.equal((await call(listed.port, 'GET', '/v1/stats', { host: 'other.example.test' })).status, 403);

  // A token: a rebinding page does not have it, so any Host is served unless a list is set.
  const tokened = await startApi(t, { apiToken: TOKEN });
  const auth = { authorization: `Bearer ${TOKEN}` };
  assert.equal((await call(tokened.port, 'GET', '/v1/stats', { ...auth, host: 'mail.example.test' })).status, 200);
  assert.equal((await call(tokened.port, 'GET', '/v1/stats', { host: 'mail.example.test' })).status, 401);
  const both = await startApi(t, { apiToken: TOKEN, httpAllowedHosts: ['mail.example.test'] });
  assert.equal((await call(both.port, 'GET', '/v1/stats', { ...auth, host: 'mail.example.test' })).status, 200);
  const r = await call(both.port, 'GET', '/v1/stats', { ...auth, host: 'rebind.evil.example' });
  assert.equal(r.status, 403);
  assert.equal(r.json.error.code, 'PST_HTTP_HOST_NOT_ALLOWED');
});

test('a cross-site form post to hold a message is refused; each defence alone refuses it', async (t) => {
  const { node, port } = await startApi(t);
  const id = await queueOne(node);
  const path = `/v1/queue/messages/${id}/hold`;
  const host = `127.0.0.1:${port}`;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };

  // What a browser sends for <form method=post action=http://127.0.0.1:8025/…> on evil.example.
  const browser = await call(port, 'POST', path, { ...form, host, origin: 'http://evil.example', 'sec-fetch-site': 'cross-site' }, 'x=1');
  assert.ok(browser.status >= 400 && browser.status < 500, `status ${browser.status}`);
  assert.equal(node.queue.get(id)!.state !== 'held', true, 'not held');

  // The Content-Type alone (an old browser with neither Origin nor Sec-Fetch-Site).
  const typeOnly = await call(port, 'POST', path, { ...form, host }, 'x=1');
  assert.equal(typeOnly.status, 415);
  assert.equal(typeOnly.json.error.code, 'PST_HTTP_UNSUPPORTED_MEDIA_TYPE');
  // text/plain (a fetch simple request) and an empty form body are refused alike.
  assert.equal((await call(port, 'POST', path, { 'content-type': 'text/plain', host }, '{}')).status, 415);
  assert.equal((await call(port, 'POST', path, { ...form, host }, '')).status, 415);
  // A body without any Content-Type.
  assert.equal((await call(port, 'POST', path, { host }, 'x=1')).status, 415);

  // A foreign Origin alone, even with a JSON body and no body at all.
  for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${port + 1}`, `http://localhost:${port}`, `https://127.0.0.1:${port}/`]) {
    const r = await call(port, 'POST', path, { host, origin });
    assert.equal(r.status, 403, origin);
    assert.equal(r.json.error.code, 'PST_HTTP_CROSS_ORIGIN', origin);
  }
  // Sec-Fetch-Site alone (a no-body no-cors fetch); same-site is another origin too.
  for (const site of ['cross-site', 'same-site']) {
    const r = await call(port, 'POST', path, { host, 'sec-fetch-site': site });
    assert.equal(r.status, 403, site);
    assert.equal(r.json.error.code, 'PST_HTTP_CROSS_ORIGIN', site);
  }
  assert.equal((await call(port, 'DELETE', `/v1/queue/messages/${id}`, { host, 'sec-fetch-site': 'cross-site' })).status, 403);
  assert.notEqual(node.queue.get(id)?.state, 'held', 'still not held');

  // The same page's own requests, and tools (no Origin, no body), still work.
  const same = await call(port, 'POST', path, { host, origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' });
  assert.equal(same.status, 200, JSON.stringify(same.json));
  assert.equal(node.queue.get(id)!.state, 'held');
  assert.equal((await call(port, 'POST', `/v1/queue/messages/${id}/release`, { host })).status, 200);
  // GETs from the dashboard (same-origin, navigation) are untouched by Sec-Fetch-Site.
  assert.equal((await call(port, 'GET', '/v1/stats', { host, 'sec-fetch-site': 'same-origin' })).status, 200);
  assert.equal((await call(port, 'GET', '/', { host, 'sec-fetch-site': 'none' })).status, 200);
  // A JSON PUT with charset still passes.
  const put = await call(port, 'PUT', '/v1/suppressions/x%40rcpt.example', { 'content-type': 'application/json; charset=utf-8', host }, '{"reason":"r"}');
  assert.equal(put.status, 201, JSON.stringify(put.json));
});
