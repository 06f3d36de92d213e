// The full SMTP path with the spam filter in line: a model trained here is loaded by the
// filter workers; spam is refused at the end of DATA (550 5.7.1), ham is accepted and tagged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestNode } from '../helpers/node.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { RawClient } from '../helpers/smtp-client.js';
import { train } from '../../src/filter/spam/train.js';

const SPAM_WORDS = ['viagra', 'winner', 'free', 'money', 'prize', 'click', 'offer', 'cheap', 'casino', 'loan'];
const HAM_WORDS = ['meeting', 'patch', 'kernel', 'review', 'lunch', 'tuesday', 'build', 'release', 'thanks', 'agenda'];

function corpus(words: string[], n: number, from: string): Buffer[] {
  return Array.from({ length: n }, (_, i) => {
    const body = Array.from({ length: 40 }, (_, j) => (j % 3 === 0 ? words[(i * 7 + j) % words.length] : ['the', 'and', 'you', 'today'][j % 4])).join(' ');
    return Buffer.from(`From: ${from}\r\nTo: me@example.net\r\nSubject: ${words[i % words.length]} today\r\n\r\n${body}\r\n`);
  });
}

test('spam is refused at DATA with 550 5.7.1, ham is accepted with X-Spam headers', async (t) => {
  const dir = tmpdir(t);
  const model = join(dir, 'spam.model');
  writeFileSync(model, train(corpus(SPAM_WORDS, 60, 'deals@promo.example'), corpus(HAM_WORDS, 60, 'dev@lists.example.org'), { folds: 3, bits: 16 }).serialize());
  const node = await startTestNode(t, { POSTERN_SPAM_MODEL: model, POSTERN_SPAM_REJECT_SCORE: '0.9', POSTERN_WORKERS: '1' });
  const c = await RawClient.connect(node.ports.smtpPort);
  t.after(() => c.end());
  await c.read();
  await c.cmd('EHLO spam.example');

  const send = async (text: string) => {
    await c.cmd('MAIL FROM:<x@example.org>');
    await c.cmd('RCPT TO:<me@example.net>');
    await c.cmd('DATA');
    return c.cmd(text.replace(/\r?\n$/, '').replace(/\r?\n/g, '\r\n') + '\r\n.', 10000);
  };
  const spam = await send(corpus(SPAM_WORDS, 1, 'deals@promo.example')[0]!.toString());
  assert.equal(spam.code, 550, spam.text);
  assert.match(spam.text, /^5\.7\.1 Message rejected: spam score 0\.9\d+/);
  const ham = await send(corpus(HAM_WORDS, 1, 'dev@lists.example.org')[0]!.toString());
  assert.equal(ham.code, 250, ham.text);
  const id = /queued as (\S+)/.exec(ham.text)![1]!;
  const body = node.queue.withBody(id, (b) => b.toString('latin1'));
  assert.match(body, /\r\nX-Spam-Score: 0\.\d{4}\r\nX-Spam-Status: No, score=0\.\d{4} required=0\.\d{4}\r\nFrom: dev@lists\.example\.org/);
  assert.equal(node.queue.counts().total, 1, 'the spam was not queued');
});

test('quarantine: at or above POSTERN_SPAM_QUARANTINE_SCORE the message is accepted but held', async (t) => {
  const dir = tmpdir(t);
  const model = join(dir, 'spam.model');
  writeFileSync(model, train(corpus(SPAM_WORDS, 60, 'deals@promo.example'), corpus(HAM_WORDS, 60, 'dev@lists.example.org'), { folds: 3, bits: 16 }).serialize());
  const node = await startTestNode(t, { POSTERN_SPAM_MODEL: model, POSTERN_SPAM_QUARANTINE_SCORE: '0.9', POSTERN_WORKERS: '1' });
  const { sendMessage } = await import('../helpers/smtp-client.js');
  const id = await sendMessage(node.ports.smtpPort, 'x@example.org', ['me@example.net'], corpus(SPAM_WORDS, 1, 'deals@promo.example')[0]!.toString());
  assert.equal(node.queue.get(id)!.state, 'held');
  assert.equal(node.ctx.counters.filterQuarantined, 1);
  // tagged as spam the way SpamAssassin does it (ham gets no X-Spam-Flag: see the test above)
  assert.match(node.queue.withBody(id, (b) => b.toString('latin1')), /^Received: [^]*?\r\nX-Spam-Flag: YES\r\nX-Spam-Score: 0\.9\d{3}\r\nX-Spam-Status: Yes, score=0\.9\d{3} required=0\.\d{4}\r\nFrom: deals@promo\.example/);
});

test('a bad spam score setting stops start-up naming the variable', async (t) => {
  await assert.rejects(startTestNode(t, { POSTERN_SPAM_MODEL: '/nonexistent', POSTERN_SPAM_REJECT_SCORE: '7' }), /POSTERN_SPAM_REJECT_SCORE="7" is invalid: expected a score from 0 to 1/);
});

test('an unreadable spam model stops start-up naming the variable', async (t) => {
  await assert.rejects(startTestNode(t, { POSTERN_SPAM_MODEL: '/nonexistent/spam.model' }), /POSTERN_SPAM_MODEL="\/nonexistent\/spam\.model" is invalid: ENOENT/);
});
