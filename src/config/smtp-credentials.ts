// The credentials file of outbound AUTH (a route's "/auth=" or POSTERN_SMARTHOST_AUTH_FILE):
// which user and password to give which next hop, as Postfix's smtp_sasl_password_maps. It
// must be a regular file open to nobody but its owner, the user postern runs as or root (the
// sasl_passwd convention: chmod 600), checked at start-up and at every re-read. Re-read when it
// changes (looked at, at most once a second, when a connection is opened); a broken new
// version keeps the previous one. Nothing here ever puts a password in an error message.
//
//   # comment                              blank lines and "#" lines are skipped
//   user:password                          every host of the route (at most one such line)
//   relay.example.net user password        that host, any port (the password is the rest
//                                          of the line: it may hold blanks, not end in one)
//   [relay.example.net]:587 user:password  Postfix's sasl_passwd form; with a port, that
//                                          port only
//
// The most specific line wins: host and port, then host, then the line without a host.
import { readFileSync, statSync, type Stats } from 'node:fs';
import { PosternError } from '../errors.js';
import { parseHostPort } from './routes.js';
import { failure, success, type Result } from '../lib/result.js';

export interface SmtpCredentials {
  readonly user: string;
  readonly password: string;
}

/** Entries by "host" or "host:port" ('' for the line without a host). */
export type CredentialTable = ReadonlyMap<string, SmtpCredentials>;

const MAX_FILE_BYTES = 64 * 1024;
const MAX_ENTRIES = 1000;
/** RFC 4616 allows more; a relay's user name and password longer than this are a mistake. */
const MAX_FIELD_BYTES = 255;
/** How often a connection may look at the file for a change. */
const CHECK_INTERVAL_MS = 1000;

/** Printable text without blanks at either end; no control characters (NUL separates PLAIN's fields). */
function field(s: string): boolean {
  if (s.length === 0 || Buffer.byteLength(s) > MAX_FIELD_BYTES || s.trim() !== s) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return false;
  }
  return true;
}

/** The table in `text`; errors name `where` and the line number, never what the line holds. */
export function parseCredentials(text: string, where: string): Result<CredentialTable, string> {
  const table = new Map<string, SmtpCredentials>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const at = `${where}:${i + 1}`;
    const blank = line.search(/[ \t]/);
    let key = '';
    let user: string;
    let password: string;
    if (blank < 0) {
      const colon = line.indexOf(':');
      if (colon < 0) return failure(`${at}: expected user:password, host user password or host user:password`);
      user = line.slice(0, colon);
      password = line.slice(colon + 1);
    } else {
      const host = parseHostPort(line.slice(0, blank), 0);
      if (!host.ok) return failure(`${at}: the first word is not a host, [host] or host:port`);
      key = host.value.port === 0 ? host.value.host : `${host.value.host}:${host.value.port}`;
      const rest = line.slice(blank).trim();
      const sep = rest.search(/[ \t]/);
      if (sep >= 0) {
        user = rest.slice(0, sep);
        password = rest.slice(sep).trim();
      } else {
        const colon = rest.indexOf(':');
        if (colon < 0) return failure(`${at}: expected host user password or host user:password`);
        user = rest.slice(0, colon);
        password = rest.slice(colon + 1);
      }
    }
    if (!field(user) || !field(password)) return failure(`${at}: the user name and the password must be 1-${MAX_FIELD_BYTES} bytes of text without control characters`);
    if (table.has(key)) return failure(`${at}: a second entry for ${key === '' ? 'every host' : key}`);
    if (table.size >= MAX_ENTRIES) return failure(`${at}: more than ${MAX_ENTRIES} entries`);
    table.set(key, Object.freeze({ user, password }));
  }
  return success(table);
}

/** The credentials for `host` (as routes.ts writes it) on `port`, or undefined. */
export function credentialsFor(table: CredentialTable, host: string, port: number): SmtpCredentials | undefined {
  const h = host.toLowerCase();
  return table.get(`${h}:${port}`) ?? table.get(h) ?? table.get('');
}

/**
 * Why the file may not be used, or null: not a regular file, open to group or others, or owned
 * by someone other than this process's user or root (who could read or swap the password).
 */
export function fileModeProblem(st: Stats, uid: number | undefined = process.getuid?.()): string | null {
  if (!st.isFile()) return 'is not a regular file';
  if ((st.mode & 0o077) !== 0) return `is open to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`;
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) return `is owned by uid ${st.uid}, neither postern's user (${uid}) nor root`;
  return null;
}

/** Read and check the file; throws PST_ERR_CONFIG_SMTP_AUTH naming the file (never a password). */
export function readCredentialsFile(path: string): CredentialTable {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw new PosternError('PST_ERR_CONFIG_SMTP_AUTH', `${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const bad = fileModeProblem(st);
  if (bad !== null) throw new PosternError('PST_ERR_CONFIG_SMTP_AUTH', `${path} ${bad}`);
  if (st.size > MAX_FILE_BYTES) throw new PosternError('PST_ERR_CONFIG_SMTP_AUTH', `${path} is larger than ${MAX_FILE_BYTES} bytes`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PosternError('PST_ERR_CONFIG_SMTP_AUTH', `${path} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const t = parseCredentials(text, path);
  if (!t.ok) throw new PosternError('PST_ERR_CONFIG_SMTP_AUTH', t.error);
  return t.value;
}

/**
 * One credentials file as delivery uses it: read on first use, then re-read when its inode,
 * size or time changes (looked at no more than once a second). A version that cannot be used
 * keeps the previous table, and `onError` says why (once per version).
 */
export class CredentialsFile {
  readonly path: string;
  #table: CredentialTable | null = null;
  /** The file's signature when last read ('\0' before the first read). */
  #seen = '\0';
  #checkedAt = -Infinity;
  /** Why the last version could not be used (never holds a password). */
  #lastError = '';
  readonly #onError: (err: Error) => void;
  readonly #now: () => number;

  constructor(path: string, opts: { onError?: (err: Error) => void; now?: () => number } = {}) {
    this.path = path;
    this.#onError = opts.onError ?? (() => {});
    this.#now = opts.now ?? Date.now;
  }

  /** The credentials for host:port, or why there are none (no password in it). */
  lookup(host: string, port: number): Result<SmtpCredentials, string> {
    this.#refresh();
    if (this.#table === null) return failure(`credentials file ${this.path} cannot be used: ${this.#lastError}`);
    const c = credentialsFor(this.#table, host, port);
    return c ? success(c) : failure(`credentials file ${this.path} has no entry for ${host}:${port}`);
  }

  #refresh(): void {
    const now = this.#now();
    if (now - this.#checkedAt < CHECK_INTERVAL_MS) return;
    this.#checkedAt = now;
    let sig = '';
    try {
      const st = statSync(this.path, { throwIfNoEntry: false });
      if (st !== undefined) sig = `${st.ino}:${st.size}:${st.mtimeMs}:${st.mode}:${st.uid}`;
    } catch {
      sig = 'unreadable';
    }
    if (sig === this.#seen) return;
    this.#seen = sig;
    try {
      this.#table = readCredentialsFile(this.path);
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#onError(err as Error);
    }
  }
}
