// The sender login map (POSTERN_SENDER_LOGINS, as Postfix's smtpd_sender_login_maps): which
// addresses each AUTH user may send as, in MAIL FROM (else 553 5.7.1) and in From: (else the
// DKIM filter does not sign). One entry a line, "alice@example.com alice" or "@example.org
// alice, bob" (any address of the domain, not of its subdomains). Entries only grant: a user
// may use what any line gives it. Read at start-up and on SIGHUP.
import { readFile } from 'node:fs/promises';
import { PosternError } from '../errors.js';
import { grantKey, isGranted } from '../lib/sender-grant.js';
import { toAsciiDomain } from '../lib/domain-name.js';
import { validUserName } from './users.js';

const NONE: ReadonlySet<string> = new Set();

export class SenderLogins {
  /** user → what it may send as (grantKey forms and "@domain"). */
  readonly #grants: Map<string, Set<string>>;
  /** The same, as arrays for the filter envelope (built once). */
  readonly #lists = new Map<string, readonly string[]>();

  constructor(grants: Map<string, Set<string>>) {
    this.#grants = grants;
  }

  /** Entries (address or domain, user) pairs, for logs. */
  get size(): number {
    let n = 0;
    for (const g of this.#grants.values()) n += g.size;
    return n;
  }

  static parse(text: string, source = 'sender login map'): SenderLogins {
    const grants = new Map<string, Set<string>>();
    const seen = new Map<string, number>();
    text.split(/\r?\n/).forEach((line, i) => {
      const where = `${source}:${i + 1}`;
      const t = line.trim();
      if (t === '' || t.startsWith('#')) return;
      const m = /^(\S+)\s+(\S.*)$/.exec(t);
      if (!m) throw new PosternError('PST_ERR_AUTH_SENDER_LOGINS', `${where}: expected "address-or-@domain user[, user…]"`);
      const raw = m[1]!;
      let key: string | null;
      if (raw.startsWith('@')) {
        const d = toAsciiDomain(raw.slice(1));
        key = d === null ? null : `@${d}`;
      } else {
        // eslint-disable-next-line no-control-regex -- an address with a control character (or a NUL) is never one we grant
        key = /[\x00-\x20\x7f]/.test(raw) || raw.indexOf('@') !== raw.lastIndexOf('@') ? null : grantKey(raw);
      }
      if (key === null) throw new PosternError('PST_ERR_AUTH_SENDER_LOGINS', `${where}: ${JSON.stringify(raw)} is not an address (local@domain) or a domain (@domain)`);
      const before = seen.get(key);
      if (before !== undefined) throw new PosternError('PST_ERR_AUTH_SENDER_LOGINS', `${where}: ${raw} is already listed at line ${before}`);
      seen.set(key, i + 1);
      const users = m[2]!.split(/[\s,]+/).filter((u) => u !== '');
      for (const u of users) {
        if (!validUserName(u)) throw new PosternError('PST_ERR_AUTH_SENDER_LOGINS', `${where}: ${JSON.stringify(u)} is not a user name (no spaces or colons, 1-256 characters)`);
        let g = grants.get(u);
        if (g === undefined) grants.set(u, (g = new Set()));
        g.add(key);
      }
    });
    return new SenderLogins(grants);
  }

  static async load(path: string): Promise<SenderLogins> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (cause) {
      throw new PosternError('PST_ERR_AUTH_SENDER_LOGINS', `cannot read ${path}: ${(cause as Error).message}`, { cause });
    }
    return SenderLogins.parse(text, path);
  }

  /** May `user` send as `address` (a MAIL FROM or From: address)? */
  mayUse(user: string, address: string): boolean {
    return isGranted(this.#grants.get(user) ?? NONE, address);
  }

  /** What `user` may send as, for the filter envelope (empty: nothing). */
  grantsOf(user: string): readonly string[] {
    let list = this.#lists.get(user);
    if (list === undefined) {
      list = Object.freeze([...(this.#grants.get(user) ?? NONE)]);
      if (this.#grants.has(user)) this.#lists.set(user, list);
    }
    return list;
  }
}
