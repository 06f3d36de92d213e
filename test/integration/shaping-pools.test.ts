// Egress sources bound for real on loopback: a node whose shaping file names sources
// 127.0.0.2 and 127.0.0.3 (Linux routes all of 127.0.0.0/8 to lo) delivers each message from
// the source of its sender domain's pool; the receiving server sees each connection's peer
// address and EHLO name, and a connection bound to one source never carries another's mail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestNode } from '../helpers/node.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';

const FILE = `[source.ip2]
address = "127.0.0.2"
ehlo = "mta2.test.example"

[source.ip3]
address = "127.0.0.3"
ehlo = "mta3.test.example"

[pool.news]
sources = { ip2 = 1 }
sender_domains = ["news.example"]

[pool.main]
sources = { ip3 = 1 }
default = true
`;

test('each message leaves from its pool source: bound address and EHLO name seen by the receiver, one source per connection', async (t) => {
  const srv = await startScriptedServer(t);
  const file = join(tmpdir(t), 'shaping.toml');
  writeFileSync(file, FILE);
  const node = await startTestNode(
    t,
    { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `dest.example=smtp:127.0.0.1:${srv.port}`, POSTERN_TLS_POLICY: 'none', POSTERN_SHAPING: file },
    { delivery: { pollIntervalMs: 50 } },
  );
  const senders = ['a@news.example', 'b@shop.example', 'c@news.example', 'd@shop.example', 'e@news.example'];
  for (const [i, s] of senders.entries()) await sendMessage(node.ports.smtpPort, s, [`r${i}@dest.example`], `Subject: m${i}\r\n\r\nhello\r\n`);
  await waitFor('all delivered', () => srv.messages().length === senders.length && node.queue.counts().total === 0, 15_000);
  const want: Record<string, { address: string; ehlo: string }> = {
    'news.example': { address: '127.0.0.2', ehlo: 'EHLO mta2.test.example' },
    'shop.example': { address: '127.0.0.3', ehlo: 'EHLO mta3.test.example' },
  };
  const seen = new Set<string>();
  for (const s of srv.sessions) {
    if (s.messages.length === 0) continue;
    const ehlo = s.commands.find((c) => c.startsWith('EHLO'));
    for (const m of s.messages) {
      const domain = /@([^>]+)>/.exec(m.mailFrom)![1]!;
      assert.deepEqual({ address: s.remoteAddress.replace(/^::ffff:/, ''), ehlo }, want[domain], `${m.mailFrom} on connection ${s.id}`);
      seen.add(domain);
    }
  }
  assert.deepEqual([...seen].sort(), ['news.example', 'shop.example'], 'both sources were used');
  assert.equal(node.delivery!.counters.bounced, 0);
});
