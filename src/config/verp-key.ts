// The key of the VERP tag (protocol/verp.ts): POSTERN_VERP_SECRET when set, otherwise 32 random
// bytes kept in `<data dir>/verp.key`, created (mode 0600, exclusively, so two starts cannot
// write different keys) on the first start with POSTERN_VERP. A lost key only means bounces of
// mail sent before are no longer matched by VERP.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PosternError } from '../errors.js';

export const VERP_KEY_FILE = 'verp.key';

export function loadVerpKey(secret: string, dataDir: string): Buffer {
  if (secret !== '') return Buffer.from(secret, 'utf8');
  const path = join(dataDir, VERP_KEY_FILE);
  let hex: string;
  try {
    mkdirSync(dataDir, { recursive: true });
    try {
      writeFileSync(path, randomBytes(32).toString('hex') + '\n', { flag: 'wx', mode: 0o600 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    hex = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new PosternError('PST_ERR_CONFIG_VERP_KEY', `${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new PosternError('PST_ERR_CONFIG_VERP_KEY', `${path} is not a VERP key (64 hex digits); remove it to have a new one made`);
  return Buffer.from(hex, 'hex');
}
