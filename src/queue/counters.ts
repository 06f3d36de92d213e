// The counters behind counts(): a small sub-database updated inside the same LMDB write
// transactions as the records they count, so they are exactly as durable and as atomic as the
// data, survive restarts without a scan, and stay right when another process (the CLI) writes.
// Writers collect a CounterDelta (+1 for a record's new form, -1 for its old one) and apply it
// once per transaction: one read-modify-write per touched key, not per message.
import type { Database } from 'lmdb';
import { COUNTER } from './keys.js';
import type { MessageRecord, QueueCounts } from './types.js';

export class CounterDelta {
  total = 0;
  readonly priority = [0, 0, 0];
  ready = 0;
  leased = 0;
  held = 0;
  readonly domains = new Map<string, number>();
  /** Ready messages per destination they wait for (the wait index, per key). */
  readonly waiting = new Map<string, number>();

  /** Count (sign 1) or uncount (sign -1) a record as it is stored. */
  add(rec: MessageRecord, sign: 1 | -1): void {
    this.total += sign;
    this.priority[rec.priority] = this.priority[rec.priority]! + sign;
    if (rec.state === 'ready') {
      this.ready += sign;
      for (const d of waitsOf(rec)) this.waiting.set(d, (this.waiting.get(d) ?? 0) + sign);
    } else if (rec.state === 'leased') this.leased += sign;
    else this.held += sign;
    for (const r of rec.recipients) {
      if (r.state !== 'pending') continue;
      this.domains.set(r.domain, (this.domains.get(r.domain) ?? 0) + sign);
    }
  }

  /** Write the delta; must run inside a write transaction (transaction callback or sync). */
  applyTo(db: Database<number, string>): void {
    for (const [key, d] of this.entries()) bump(db, key, d);
  }

  /** The counter keys this delta changes, with their changes (zeros left out). */
  entries(): [string, number][] {
    const out: [string, number][] = [];
    const add = (key: string, d: number): void => {
      if (d !== 0) out.push([key, d]);
    };
    add(COUNTER.total, this.total);
    for (let p = 0; p < 3; p++) add(COUNTER.priority[p]!, this.priority[p]!);
    add(COUNTER.ready, this.ready);
    add(COUNTER.leased, this.leased);
    add(COUNTER.held, this.held);
    for (const [domain, d] of this.domains) add(COUNTER.domainPrefix + domain, d);
    for (const [dest, d] of this.waiting) add(COUNTER.waitPrefix + dest, d);
    return out;
  }
}

/**
 * The destinations a record is in the wait index under: its `waitFor` without repeats, and
 * only while it is ready (leased and held messages wait for nothing).
 */
export function waitsOf(rec: MessageRecord): string[] {
  const w = rec.waitFor;
  if (rec.state !== 'ready' || w === undefined || w.length === 0) return [];
  return w.length === 1 ? w : [...new Set(w)];
}

function bump(db: Database<number, string>, key: string, d: number): void {
  const v = (db.get(key) ?? 0) + d;
  // Zero entries are removed so per-domain keys do not pile up for domains long gone.
  if (v === 0) void db.remove(key);
  else void db.put(key, v);
}

/** counts() minus byState.scheduled/ready split, which needs the due index (store.ts). */
export function readCounters(db: Database<number, string>): QueueCounts & { readyAll: number } {
  const byDomain = readPrefixed(db, COUNTER.domainPrefix);
  const get = (k: string): number => db.get(k) ?? 0;
  const readyAll = get(COUNTER.ready);
  return {
    total: get(COUNTER.total),
    byPriority: { urgent: get(COUNTER.priority[0]), normal: get(COUNTER.priority[1]), bulk: get(COUNTER.priority[2]) },
    byState: { ready: readyAll, scheduled: 0, leased: get(COUNTER.leased), held: get(COUNTER.held) },
    byDomain,
    readyAll,
  };
}

/** Every counter whose key starts with `prefix`, by the rest of its key. O(such keys). */
export function readPrefixed(db: Database<number, string>, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  // The prefix with its last character bumped bounds every key that starts with it.
  const end = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
  for (const { key, value } of db.getRange({ start: prefix, end })) {
    // defineProperty: a domain or destination spelled '__proto__' must stay a plain key.
    Object.defineProperty(out, (key as string).slice(prefix.length), { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}
