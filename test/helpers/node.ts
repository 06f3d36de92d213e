// Start a real postern node for a test: temp data dir, port 0 on 127.0.0.1, silent logs,
// closed (and the folder removed) in t.after.
import { writeFileSync } from 'node:fs';
import { makeTmpdir, removeTmpdir, tmpdir } from './tmpdir.js';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { startNode, type PosternNode } from '../../src/main.js';
import { silentLogger, type Logger } from '../../src/log/logger.js';

export async function startTestNode(t: TestContext, env: Record<string, string> = {}, options: Parameters<typeof startNode>[2] = {}, logger: Logger = silentLogger()): Promise<PosternNode> {
  const dir = makeTmpdir('postern-node-');
  const config = loadConfig({
    POSTERN_SMTP_HOST: '127.0.0.1',
    POSTERN_SMTP_PORT: '0',
    POSTERN_HOSTNAME: 'mx.test.example',
    POSTERN_DATA_DIR: join(dir, 'queue'),
    POSTERN_QUEUE_MAP_BYTES: '64M',
    POSTERN_SHUTDOWN_TIMEOUT_MS: '2000',
    POSTERN_DELIVERY: 'off',
    POSTERN_HTTP_PORT: '',
    ...env,
  });
  let node: PosternNode;
  try {
    node = await startNode(config, logger, options);
  } catch (err) {
    removeTmpdir(dir);
    throw err;
  }
  // Close the node before its folder goes.
  t.after(async () => {
    await node.close();
    removeTmpdir(dir);
  });
  return node;
}

/** A self-signed certificate made with openssl for this test only. */
export function makeCert(t: TestContext): { cert: string; key: string } {
  const dir = tmpdir(t, 'postern-cert-');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=mx.test.example'], { stdio: 'ignore' });
  return { cert, key };
}

export function writeFile(t: TestContext, name: string, text: string): string {
  const dir = tmpdir(t);
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
