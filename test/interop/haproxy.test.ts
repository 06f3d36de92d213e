// Interop with a real HAProxy (Debian haproxy 2.6) in TCP mode in front of two postern nodes on
// loopback, each trusting it (POSTERN_PROXY_TRUSTED=127.0.0.1/32), with HTTP health checks
// against each node's GET /ready (test/helpers/haproxy.ts). A client bound to 127.0.0.7 sends
// through HAProxy: whichever node took each message names 127.0.0.7 in its Received: header,
// with send-proxy-v2 (binary) and send-proxy (v1 text), on the SMTP port and on the implicit-TLS
// port (TLS passed through, the header in clear before it). A node that stops being ready is taken
// out by the health check and the next sessions go to the other. Skipped only when haproxy is
// missing outside CI; .ci/run installs it. Run with `npm run test:interop`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RawClient } from '../helpers/smtp-client.js';
import { makeCert, startTestNode } from '../helpers/node.js';
import { waitFor } from '../helpers/wait-for.js';
import { haproxySkip, startHaproxy } from '../helpers/haproxy.js';
import type { PosternNode } from '../../src/main.js';

const skip = haproxySkip();
const CLIENT = '127.0.0.7';

async function twoNodes(t: Parameters<typeof startTestNode>[0]): Promise<PosternNode[]> {
  const { cert, key } = makeCert(t);
  const env = {
    POSTERN_TLS_CERT: cert,
    POSTERN_TLS_KEY: key,
    POSTERN_SMTPS_PORT: '0',
    POSTERN_PROXY_TRUSTED: '127.0.0.1/32',
    // Loopback clients relay by default; here only the client's own address may.
    POSTERN_TRUSTED_NETWORKS: `${CLIENT}/32`,
    POSTERN_HTTP_PORT: '0',
    POSTERN_HTTP_HOST: '127.0.0.1',
  };
  return [await startTestNode(t, env), await startTestNode(t, env)];
}

/** One message from CLIENT through HAProxy (implicit TLS end to end with `tls`); returns the queue id from the 250. */
async function sendVia(port: number, n: number, tls = false): Promise<string> {
  const c = await RawClient.connect(port, { localAddress: CLIENT, tls });
  try {
    const greeting = await c.read();
    assert.equal(greeting.code, 220, greeting.text);
    assert.equal((await c.cmd('EHLO client.interop.test')).code, 250);
    assert.equal((await c.cmd('MAIL FROM:<s@client.interop.test>')).code, 250);
    // A remote domain: accepted only because 127.0.0.7, the carried address, may relay.
    const rcpt = await c.cmd('RCPT TO:<r@remote.example>');
    assert.equal(rcpt.code, 250, rcpt.text);
    assert.equal((await c.cmd('DATA')).code, 354);
    const r = await c.cmd(`Subject: through haproxy ${n}\r\n\r\nbody ${n}\r\n.`, 10_000);
    assert.equal(r.code, 250, r.text);
    await c.cmd('QUIT').catch(() => undefined);
    return /queued as (\S+)/.exec(r.text)![1]!;
  } finally {
    c.end();
  }
}

/** Which node holds message `id`, and its first Received: header (unfolded). */
function find(nodes: PosternNode[], id: string): { node: number; received: string } {
  for (let i = 0; i < nodes.length; i++) {
    if (nodes[i]!.queue.get(id) === undefined) continue;
    const text = nodes[i]!.queue.withBody(id, (b) => b.toString('latin1'));
    const received = /^Received: [^]*?\r\n(?![ \t])/.exec(text)?.[0] ?? '';
    return { node: i, received: received.replace(/\r\n[ \t]/g, ' ') };
  }
  assert.fail(`message ${id} is in neither node's queue`);
}

for (const mode of ['send-proxy-v2', 'send-proxy'] as const) {
  test(`HAProxy ${mode}: the client's address 127.0.0.7 reaches whichever node took the message`, { skip }, async (t) => {
    const nodes = await twoNodes(t);
    const haproxy = await startHaproxy(
      t,
      nodes.map((n) => ({ smtpPort: n.ports.smtpPort, smtpsPort: n.ports.smtpsPort, httpPort: n.ports.httpPort! })),
      mode,
    );
    const seen = new Set<number>();
    for (let i = 0; i < 4; i++) {
      const id = await sendVia(haproxy.port, i);
      const { node, received } = find(nodes, id);
      seen.add(node);
      assert.match(received, /^Received: from client\.interop\.test \(\[127\.0\.0\.7\]\) by mx\.test\.example \(postern\) with ESMTP id /, received);
    }
    assert.deepEqual([...seen].sort(), [0, 1], 'round robin used both nodes');
    // The implicit-TLS frontend: HAProxy passes TLS through, the header goes first in clear.
    seen.clear();
    for (let i = 0; i < 2; i++) {
      const id = await sendVia(haproxy.tlsPort!, 20 + i, true);
      const { node, received } = find(nodes, id);
      seen.add(node);
      assert.match(received, /^Received: from client\.interop\.test \(\[127\.0\.0\.7\]\) \(using TLSv1\.3 with cipher [^)]+\) by mx\.test\.example \(postern\) with ESMTPS id /, received);
    }
    assert.deepEqual([...seen].sort(), [0, 1], 'round robin used both nodes over TLS');

    // The health check reads /ready: a node that drains (the first step of its shutdown, set
    // here alone) answers 503 there and is taken out; the next sessions go to the other node.
    nodes[1]!.ctx.draining = true;
    await waitFor('HAProxy marks node2 down in the SMTP backend', () => /Server postern\/node2 is DOWN/.test(haproxy.output()), 10_000);
    assert.match(haproxy.output(), /Server postern\/node2 is DOWN, reason: Layer7 wrong status, code: 503/, haproxy.output());
    for (let i = 0; i < 3; i++) assert.equal(find(nodes, await sendVia(haproxy.port, 10 + i)).node, 0);
    assert.doesNotMatch(haproxy.output(), /node1 is DOWN|\[ALERT\]/, haproxy.output());
  });
}
