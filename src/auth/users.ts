// The AUTH users file: one user per line, "name:scrypt$N$r$p$salt$hash" (salt and hash in
// base64). Written by `postern user add`, read at start-up (and on SIGHUP). The SMTP server
// checks passwords in threads of its own (password-checker.ts); verifyPassword here uses the
// asynchronous scrypt, for the command line. Both compare in constant time.
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

export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  expected: Buffer;
}

/** The parts of a stored "scrypt$N$r$p$salt$hash"; null when it is not one. */
export function parseScryptHash(stored: string): ScryptHash | null {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (!(n > 1 && r > 0 && p > 0 && expected.length > 0)) return null;
  return { N: n, r, p, salt, expected };
}

/** Memory scrypt may use for a stored hash's parameters (N=16384, r=8 needs 16 MiB). */
export const SCRYPT_MAXMEM = 256 * 1024 * 1024;

/**
 * Checks on libuv's thread pool: for the command line and tests. The SMTP server checks in
 * its own threads instead (password-checker.ts), away from file I/O and DNS.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const h = parseScryptHash(stored);
  if (h === null) return false;
  const key = await scrypt(Buffer.from(password, 'utf8'), h.salt, h.expected.length, { N: h.N, r: h.r, p: h.p, maxmem: SCRYPT_MAXMEM });
  return timingSafeEqual(key, h.expected);
}

const NAME = /^[^\s:]{1,256}$/u;

export function validUserName(name: string): boolean {
  return NAME.test(name);
}

export class UserDb {
  readonly #users: Map<string, string>;
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
  /**
   * The stored hash of `name`; for an unknown name, a hash no password matches with the same
   * cost parameters, so checking it takes the same work (no user oracle by timing).
   */
  hashOf(name: string): string {
    return this.#users.get(name) ?? DUMMY;
  }
  /** Resolves false for unknown users after the same work as a wrong password. */
  async verify(name: string, password: string): Promise<boolean> {
    return verifyPassword(password, this.hashOf(name));
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
