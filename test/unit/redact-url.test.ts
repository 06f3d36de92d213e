// redactUrl/redactUrls: userinfo and query masked, everything else kept, text around untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redactUrl, redactUrls } from '../../src/lib/redact-url.js';

test('redactUrl masks userinfo and the query, drops the fragment, keeps the rest', () => {
  assert.equal(redactUrl('http://127.0.0.1:9000/in'), 'http://127.0.0.1:9000/in');
  assert.equal(redactUrl('http://u:p@127.0.0.1:9000/in'), 'http://***@127.0.0.1:9000/in');
  assert.equal(redactUrl('https://u@h.example/'), 'https://***@h.example/');
  assert.equal(redactUrl('http://:p@h.example/x?k=v&a=b#frag'), 'http://***@h.example/x?***');
  // A password holding "@" and "/" (percent-encoded or not): nothing of it shows.
  assert.equal(redactUrl('http://u:p@ss@h.example/in'), 'http://***@h.example/in');
  assert.equal(redactUrl('http://u:a%2Fb%40c@h.example/in'), 'http://***@h.example/in');
  // Not a URL at all: the same masks by pattern.
  assert.equal(redactUrl('http://u:p@[bad/in?k=v'), 'http://***@[bad/in?***');
});

test('redactUrls redacts each URL inside a text such as POSTERN_ROUTES', () => {
  const routes = 'a.test=webhook:http://u:p@127.0.0.1:1/x?k=1;b.test=smtp:127.0.0.1:25;c.test=webhook:https://h.example/y';
  assert.equal(redactUrls(routes), 'a.test=webhook:http://***@127.0.0.1:1/x?***;b.test=smtp:127.0.0.1:25;c.test=webhook:https://h.example/y');
  assert.equal(redactUrls('no url here'), 'no url here');
});
