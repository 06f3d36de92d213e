// The postern side of the interop DSN tests: a node that takes mail for post.test into a
// Maildir, where only me@post.test exists (anyone else is refused at RCPT with 550 5.1.1, so
// the other MTA must bounce), and a reader of me@post.test's new mail.
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { PosternNode } from '../../src/main.js';
import { startTestNode, writeFile } from './node.js';
import { tmpdir } from './tmpdir.js';

export async function startPostTestMailbox(t: TestContext): Promise<{ node: PosternNode; meNew: () => string[] }> {
  const root = tmpdir(t);
  mkdirSync(join(root, 'mail'));
  const map = writeFile(t, 'recipients', 'me@post.test\n');
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_LOCAL_DOMAINS: 'post.test',
    POSTERN_RECIPIENTS: map,
    POSTERN_MAILDIR_CREATE: 'true',
    POSTERN_ROUTES: `post.test=maildir:${join(root, 'mail')}`,
    POSTERN_HOSTNAME: 'mx.postern.interop',
  }, { delivery: { pollIntervalMs: 50 } });
  const box = join(root, 'mail', 'post.test', 'me', 'new');
  const meNew = (): string[] => (existsSync(box) ? readdirSync(box).map((f) => readFileSync(join(box, f), 'latin1')) : []);
  return { node, meNew };
}
