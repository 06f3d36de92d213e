// The suppression list: recipient addresses the delivery scheduler must never send to. It
// lives in the queue's LMDB environment (sub-database 'suppress'), so it is exactly as durable
// as the queue, survives restarts, and is shared with any other process that opens the folder.
//
// Address matching: the key is `local@domain` with BOTH parts lower-cased (and a trailing dot
// on the domain dropped). Domains are case-insensitive (RFC 5321 §2.4); local parts strictly
// are not, but no real mailbox provider distinguishes Bob@ from bob@, and a suppression that
// missed a differently-cased copy of the same address would be a compliance bug, so postern
// lower-cases the local part too. Nothing else is rewritten (no plus-address or dot folding).
// The address is split at its last '@' (a quoted local part may contain '@').
//
// Values are JSON text ({reason, added_at}) with the 'string' encoding: lmdb-js never mints
// msgpack structures of its own in this environment (see store.ts).
import type { Database } from 'lmdb';
import { invalidArgument } from '../lib/invalid-argument.js';

/** LMDB keys are at most 511 bytes in lmdb-js; an RFC 5321 path is at most 256. */
export const MAX_SUPPRESSED_ADDRESS_BYTES = 320;

export interface Suppression {
  /** The normalised key (see normalizeSuppressed). */
  address: string;
  reason: string | null;
  /** ms epoch. */
  addedAt: number;
}

/** The form addresses are stored and looked up under, or null when it cannot be one. */
export function normalizeSuppressed(address: string): string | null {
  const a = address.trim();
  const at = a.lastIndexOf('@');
  if (at <= 0 || at === a.length - 1) return null;
  let domain = a.slice(at + 1).toLowerCase();
  if (domain.endsWith('.')) domain = domain.slice(0, -1);
  if (domain === '') return null;
  const key = `${a.slice(0, at).toLowerCase()}@${domain}`;
  if (Buffer.byteLength(key) > MAX_SUPPRESSED_ADDRESS_BYTES) return null;
  return key;
}

type Writer = <T>(op: string, fn: () => T) => Promise<T>;

/**
 * Told each change once it is on disk (cluster/shared-suppressions.ts copies it to Redis, so
 * the other nodes refuse the address too). `value` is the stored JSON text.
 */
export interface SuppressionMirror {
  added(address: string, value: string): void;
  removed(address: string): void;
}

function decode(address: string, raw: string): Suppression {
  try {
    const v = JSON.parse(raw) as { reason?: unknown; added_at?: unknown };
    return { address, reason: typeof v.reason === 'string' ? v.reason : null, addedAt: typeof v.added_at === 'number' ? v.added_at : 0 };
  } catch {
    return { address, reason: null, addedAt: 0 };
  }
}

export class SuppressionList {
  readonly #db: Database<string, string>;
  readonly #write: Writer;
  readonly #clock: () => number;
  readonly #checkRead: () => void;
  #mirror: SuppressionMirror | null = null;

  /** Built by Queue: `write` runs its callback in one of the queue's write transactions. */
  constructor(db: Database<string, string>, write: Writer, clock: () => number, checkRead: () => void) {
    this.#db = db;
    this.#write = write;
    this.#clock = clock;
    this.#checkRead = checkRead;
  }

  #key(address: string): string {
    const k = normalizeSuppressed(address);
    if (k === null) throw invalidArgument(`not a suppressible address: ${JSON.stringify(address)}`);
    return k;
  }

  /** Copy every later add and remove there (null: stop). */
  setMirror(m: SuppressionMirror | null): void {
    this.#mirror = m;
  }

  /**
   * Add (or update the reason of) an address. Resolves true if it was new, once on disk.
   * `opts.addedAt`, `opts.mirror: false`: a copy of another node's entry (kept as it was there, not sent back).
   */
  async add(address: string, reason?: string, opts: { addedAt?: number; mirror?: boolean } = {}): Promise<boolean> {
    const key = this.#key(address);
    const addedAt = Math.floor(opts.addedAt ?? this.#clock());
    let value = '';
    const fresh = await this.#write('suppress', () => {
      const old = this.#db.get(key);
      const prev = old === undefined ? null : decode(key, old);
      value = JSON.stringify({ reason: reason ?? prev?.reason ?? null, added_at: prev?.addedAt ?? addedAt });
      void this.#db.put(key, value);
      return old === undefined;
    });
    if (opts.mirror !== false) this.#mirror?.added(key, value);
    return fresh;
  }

  /** Remove an address; resolves true if it was there. */
  async remove(address: string): Promise<boolean> {
    const key = normalizeSuppressed(address);
    if (key === null) return false;
    const was = await this.#write('unsuppress', () => {
      if (this.#db.get(key) === undefined) return false;
      void this.#db.remove(key);
      return true;
    });
    // Removed here and everywhere, even when this node had no copy (another node's entry).
    this.#mirror?.removed(key);
    return was;
  }

  /** Synchronous lookup (one LMDB read, microseconds): the scheduler calls it per recipient. */
  has(address: string): boolean {
    this.#checkRead();
    const key = normalizeSuppressed(address);
    return key !== null && this.#db.get(key) !== undefined;
  }

  get(address: string): Suppression | undefined {
    this.#checkRead();
    const key = normalizeSuppressed(address);
    if (key === null) return undefined;
    const raw = this.#db.get(key);
    return raw === undefined ? undefined : decode(key, raw);
  }

  /** Up to `limit` entries in address order, strictly after the key `after` (pagination). */
  list(opts: { limit: number; after?: string }): Suppression[] {
    this.#checkRead();
    const out: Suppression[] = [];
    const after = opts.after === undefined || opts.after === '' ? undefined : (normalizeSuppressed(opts.after) ?? opts.after);
    const range = after === undefined ? { limit: opts.limit } : { start: after, limit: opts.limit + 1 };
    for (const { key, value } of this.#db.getRange(range)) {
      if (key === after) continue;
      if (out.length >= opts.limit) break;
      out.push(decode(key, value));
    }
    return out;
  }

  count(): number {
    this.#checkRead();
    return this.#db.getCount();
  }
}
