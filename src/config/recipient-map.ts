// The recipient map (POSTERN_RECIPIENTS): which addresses of the local domains exist, and the
// aliases among them, as a file the operator writes. Parsed whole (every error named
// file:line), aliases expanded once at parse time (loops and oversized expansions are errors),
// then looked up at RCPT. RecipientMapFile re-reads the file when it changes; a broken new file
// keeps the old map (a typo must not make every address unknown).
//
//   # comment                       (a '#' at the start of a line or after white space)
//   alice@example.org               the mailbox exists
//   @example.net                    every local part of example.net exists (catch-all)
//   sales@example.org: alice@example.org, bob@elsewhere.test
//                                   an alias: the recipient is replaced by its targets
//   @example.com: alice@example.org every other local part of example.com goes there
import { readFileSync, statSync } from 'node:fs';
import { PosternError } from '../errors.js';
import { PolledFile } from './polled-file.js';
import { toAsciiDomain } from '../lib/domain-name.js';
import { failure, success, type Result } from '../lib/result.js';

/** Final addresses one alias may expand to (after nested aliases). */
export const MAX_ALIAS_TARGETS = 100;
/** Aliases nested in aliases. */
export const MAX_ALIAS_DEPTH = 8;
/** The file is read whole; a map larger than this is refused (it would be a mistake). */
export const MAX_MAP_BYTES = 64 * 1024 * 1024;

export interface RecipientMap {
  /** Mailboxes that exist: plain entries and aliases that list themselves. Lower-case keys. */
  readonly mailboxes: ReadonlySet<string>;
  /** Alias → final targets (no aliases left among them); "@domain" for a catch-all alias. */
  readonly aliases: ReadonlyMap<string, readonly string[]>;
  /** Domains with a plain catch-all "@domain" (no targets). */
  readonly catchAll: ReadonlySet<string>;
  /** Every domain that appears on a left side. */
  readonly domains: ReadonlySet<string>;
}

// A dot-atom-ish local part: no white space, quotes, brackets or separators of this grammar.
// eslint-disable-next-line no-control-regex
const LOCAL = /^[^\s"(),:;<>@[\\\]\x00-\x1f\x7f]{1,64}$/u;

/** "Local@Domain" → "local@domain" with the domain in A-labels; null when not an address. */
export function mapKey(address: string): string | null {
  const at = address.lastIndexOf('@');
  if (at <= 0 || address.length > 254) return null;
  const local = address.slice(0, at);
  if (!LOCAL.test(local)) return null;
  const domain = toAsciiDomain(address.slice(at + 1));
  return domain === null ? null : `${local.toLowerCase()}@${domain}`;
}

function withoutExtension(key: string): string | null {
  const plus = key.indexOf('+');
  const at = key.lastIndexOf('@');
  return plus > 0 && plus < at ? key.slice(0, plus) + key.slice(at) : null;
}

/** Parse the map text; `source` names the file in errors ("file:line: …"). */
export function parseRecipientMap(text: string, source: string): Result<RecipientMap, string> {
  const problems: string[] = [];
  const mailboxes = new Set<string>();
  const rawAliases = new Map<string, { targets: string[]; line: number }>();
  const catchAll = new Set<string>();
  const domains = new Set<string>();
  const seen = new Map<string, number>();
  text.split('\n').forEach((rawLine, i) => {
    const n = i + 1;
    const line = rawLine.replace(/(^|\s)#.*$/, '').trim();
    if (line === '') return;
    const where = `${source}:${n}`;
    const colon = line.indexOf(':');
    const left = (colon < 0 ? line : line.slice(0, colon)).trim();
    let key: string | null;
    if (left.startsWith('@')) {
      const d = toAsciiDomain(left.slice(1));
      if (d === null) return void problems.push(`${where}: "${left}" is not @domain`);
      key = `@${d}`;
      if (colon < 0) catchAll.add(d);
      domains.add(d);
    } else {
      key = mapKey(left);
      if (key === null) return void problems.push(`${where}: ${JSON.stringify(left.slice(0, 100))} is not an address (local@domain, no quotes)`);
      domains.add(key.slice(key.lastIndexOf('@') + 1));
    }
    const dup = seen.get(key);
    if (dup !== undefined) return void problems.push(`${where}: "${left}" is already on line ${dup}`);
    seen.set(key, n);
    if (colon < 0) {
      if (!key.startsWith('@')) mailboxes.add(key);
      return;
    }
    const targets: string[] = [];
    for (const t of line.slice(colon + 1).split(',').map((x) => x.trim())) {
      const tk = mapKey(t);
      if (tk === null) return void problems.push(`${where}: alias target ${JSON.stringify(t.slice(0, 100))} is not an address`);
      targets.push(tk);
    }
    rawAliases.set(key, { targets, line: n });
  });
  // An alias listing itself is also a mailbox ("alice@x: alice@x, archive@y": keep a copy).
  for (const [key, a] of rawAliases) if (a.targets.includes(key)) mailboxes.add(key);

  const aliases = new Map<string, readonly string[]>();
  const expand = (key: string, stack: string[], out: Set<string>, where: string): string | null => {
    for (const t of rawAliases.get(key)!.targets) {
      if (t === key) {
        out.add(t);
      } else if (rawAliases.has(t)) {
        if (stack.includes(t)) return `${where}: alias loop ${[...stack, t].join(' → ')}`;
        if (stack.length >= MAX_ALIAS_DEPTH) return `${where}: aliases nested deeper than ${MAX_ALIAS_DEPTH}`;
        const err = expand(t, [...stack, t], out, where);
        if (err !== null) return err;
      } else {
        const d = t.slice(t.lastIndexOf('@') + 1);
        // A target in a domain the map describes must exist in it (else every message bounces).
        const known = mailboxes.has(t) || catchAll.has(d) || (withoutExtension(t) !== null && mailboxes.has(withoutExtension(t)!));
        if (domains.has(d) && !known) return `${where}: alias target ${t} is not in the map`;
        out.add(t);
      }
      if (out.size > MAX_ALIAS_TARGETS) return `${where}: alias expands to more than ${MAX_ALIAS_TARGETS} addresses`;
    }
    return null;
  };
  for (const [key, a] of rawAliases) {
    const out = new Set<string>();
    const err = expand(key, [key], out, `${source}:${a.line}`);
    if (err !== null) problems.push(err);
    else aliases.set(key, Object.freeze([...out]));
  }
  if (problems.length > 0) return failure(problems.slice(0, 20).join('; ') + (problems.length > 20 ? `; and ${problems.length - 20} more` : ''));
  return success(Object.freeze({ mailboxes, aliases, catchAll, domains }));
}

/**
 * The recipient `address` (as given at RCPT) in the map: an exact entry, then the entry
 * without a "+extension" (alice+news@ is alice@), then the domain's catch-all. A mailbox
 * stands for the address as given (so Delivered-To keeps the extension); an alias for its
 * targets. Undefined: no such recipient.
 */
export function lookupRecipient(map: RecipientMap, address: string): readonly string[] | undefined {
  const key = mapKey(address);
  if (key === null) return undefined;
  for (const k of [key, withoutExtension(key)]) {
    if (k === null) continue;
    const alias = map.aliases.get(k);
    if (alias !== undefined) return alias;
    if (map.mailboxes.has(k)) return [address];
  }
  const domain = key.slice(key.lastIndexOf('@') + 1);
  if (map.catchAll.has(domain)) return [address];
  return map.aliases.get(`@${domain}`);
}

/**
 * True when the map lists `address` as a mailbox (an entry, "+extension" aside). Not an alias,
 * and not a catch-all: a catch-all accepts any local part, and making a folder for each would
 * let anyone create mailboxes again.
 */
export function isMailboxInMap(map: RecipientMap, address: string): boolean {
  const key = mapKey(address);
  if (key === null) return false;
  const bare = withoutExtension(key);
  return map.mailboxes.has(key) || (bare !== null && map.mailboxes.has(bare));
}

/** Read and parse the file; throws an Error whose message names file:line. */
export function readRecipientMap(path: string): RecipientMap {
  const st = statSync(path);
  if (st.size > MAX_MAP_BYTES) throw new PosternError('PST_ERR_CONFIG_RECIPIENT_MAP', `${path} is larger than ${MAX_MAP_BYTES} bytes`);
  const r = parseRecipientMap(readFileSync(path, 'utf8'), path);
  if (!r.ok) throw new PosternError('PST_ERR_CONFIG_RECIPIENT_MAP', r.error);
  return r.value;
}

/** The map of one file, re-read when it changes (config/polled-file.ts); a broken new version is reported and the previous map kept. */
export class RecipientMapFile extends PolledFile<RecipientMap> {
  constructor(path: string, map: RecipientMap, onReload: (err: Error | null, map: RecipientMap) => void) {
    super(path, map, readRecipientMap, onReload);
  }
}
