// The AUTH users file: one user per line, "name:scrypt$N$r$p$salt$hash" (salt and hash in
// base64). Written by `postern user add`, read at start-up (and on SIGHUP). Passwords are
// checked with the asynchronous scrypt so a login never blocks the event loop, and compared
// in constant time.
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { readFile, writeFile, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { PosternError } from '../errors.js';

const N = 16384, R = 8, P = 1, KEYLEN = 32;

function scrypt(password: Buffer, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(Buffer.from(password, 'utf8'), salt, KEYLEN, { N, r: R, p: P, maxmem: 64 * 1024 * 1024 });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (!(n > 1 && r > 0 && p > 0 && expected.length > 0)) return false;
  const key = await scrypt(Buffer.from(password, 'utf8'), salt, expected.length, { N: n, r, p, maxmem: 256 * 1024 * 1024 });
  return timingSafeEqual(key, expected);
}

const NAME = /^[^\s:]{1,256}$/u;

export function validUserName(name: string): boolean {
  return NAME.test(name);
}

/**
 * Password checks running or waiting at most, per users file. Each is a 16 MiB scrypt of tens
 * of milliseconds on libuv's thread pool (4 threads, shared with file I/O): unbounded, a flood
 * of AUTH lines from many connections queues CPU work without end, and every session waiting
 * for its check is busy (no deadline, never evicted). Past it AUTH is answered 454 4.7.0.
 */
export const MAX_PENDING_VERIFY = 32;

export class UserDb {
  readonly #users: Map<string, string>;
  #pending = 0;
  constructor(users: Map<string, string>) {
    this.#users = users;
  }
  get size(): number {
    return this.#users.size;
  }
  static parse(text: string, source = 'users file'): UserDb {
    const users = new Map<string, string>();
    const lines = text.split(/\r?\n/);
    lines.forEach((line, i) => {
      const t = line.trim();
      if (t === '' || t.startsWith('#')) return;
      const colon = t.indexOf(':');
      if (colon <= 0 || !t.slice(colon + 1).startsWith('scrypt$')) {
        throw new PosternError('PST_ERR_AUTH_USERS_FILE', `${source}:${i + 1}: expected "name:scrypt$N$r$p$salt$hash"`);
      }
      users.set(t.slice(0, colon), t.slice(colon + 1));
    });
    return new UserDb(users);
  }
  static async load(path: string): Promise<UserDb> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (cause) {
      throw new PosternError('PST_ERR_AUTH_USERS_FILE', `cannot read POSTERN_AUTH_USERS file ${path}: ${(cause as Error).message}`, { cause });
    }
    return UserDb.parse(text, path);
  }
  /** verify(), or null at once when MAX_PENDING_VERIFY checks are already running or waiting. */
  async tryVerify(name: string, password: string): Promise<boolean | null> {
    if (this.#pending >= MAX_PENDING_VERIFY) return null;
    this.#pending++;
    try {
      return await this.verify(name, password);
    } finally {
      this.#pending--;
    }
  }

  /** Resolves false for unknown users after the same work as a wrong password (no user oracle by timing). */
  async verify(name: string, password: string): Promise<boolean> {
    const stored = this.#users.get(name);
    if (stored === undefined) {
      await verifyPassword(password, DUMMY);
      return false;
    }
    return verifyPassword(password, stored);
  }
}

const DUMMY = `scrypt$${N}$${R}$${P}$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=`;

/** Add or replace a user in the file, atomically (write a temp file, then rename). */
export async function addUser(path: string, name: string, password: string): Promise<'added' | 'replaced'> {
  if (!validUserName(name)) throw new PosternError('PST_ERR_USAGE', `invalid user name ${JSON.stringify(name)}: no spaces or colons, 1-256 characters`);
  if (password.length === 0) throw new PosternError('PST_ERR_USAGE', 'empty password');
  const old = existsSync(path) ? await readFile(path, 'utf8') : '';
  const lines = old.split(/\r?\n/).filter((l) => l.trim() !== '');
  const hash = await hashPassword(password);
  let replaced = false;
  const out = lines.map((l) => {
    if (l.slice(0, l.indexOf(':')) === name) {
      replaced = true;
      return `${name}:${hash}`;
    }
    return l;
  });
  if (!replaced) out.push(`${name}:${hash}`);
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, out.join('\n') + '\n', { mode: 0o600 });
  await rename(tmp, path);
  return replaced ? 'replaced' : 'added';
}
