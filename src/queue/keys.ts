// Key layouts of the two ordered indexes (lmdb-js ordered-binary array keys) and the range
// bounds that read them. Arrays of numbers sort element by element, and a shorter array sorts
// before every array it prefixes, so [p] .. [p, now + 1] is exactly "priority p, due by now".
// Times in keys are whole milliseconds (callers round), which makes `now + 1` an exact bound.
import type { Priority } from './types.js';

/** due index: (priority, nextAttemptAt, seq) -> id. Holds exactly the messages in state 'ready'. */
export type DueKey = [priority: Priority, nextAttemptAt: number, seq: number];
/** lease index: (expiresAt, seq) -> id. Holds exactly the messages in state 'leased'. */
export type LeaseKey = [expiresAt: number, seq: number];
/**
 * wait index: (destination key, seq) -> id, one entry per destination a ready message waits
 * for (its `waitFor`). Holds exactly the ready messages with a `waitFor`, so "release every
 * message waiting for D" is one range read, oldest first.
 */
export type WaitKey = [destination: string, seq: number];

export function dueKey(priority: Priority, nextAttemptAt: number, seq: number): DueKey {
  return [priority, nextAttemptAt, seq];
}

export function leaseKey(expiresAt: number, seq: number): LeaseKey {
  return [expiresAt, seq];
}

export function waitKey(destination: string, seq: number): WaitKey {
  return [destination, seq];
}

/**
 * Messages waiting for one destination, oldest (lowest seq) first: [d] sorts before every
 * [d, seq], and [d, Infinity] after every one of them (seqs are finite integers).
 */
export function waitRange(destination: string): { start: (string | number)[]; end: (string | number)[] } {
  return { start: [destination], end: [destination, Infinity] };
}

/** Ready messages of one priority with nextAttemptAt <= nowMs, oldest due first. */
export function dueRange(priority: Priority, nowMs: number): { start: number[]; end: number[] } {
  return { start: [priority], end: [priority, nowMs + 1] };
}

/** Ready messages of one priority that are not due yet (nextAttemptAt > nowMs). */
export function scheduledRange(priority: Priority, nowMs: number): { start: number[]; end: number[] } {
  return { start: [priority, nowMs + 1], end: [priority + 1] };
}

/** Leases with expiresAt <= nowMs. */
export function expiredLeaseRange(nowMs: number): { end: number[] } {
  return { end: [nowMs + 1] };
}

/** Keys of the counters sub-database. */
export const COUNTER = {
  total: 'total',
  priority: ['p0', 'p1', 'p2'] as const,
  ready: 's:ready',
  leased: 's:leased',
  held: 's:held',
  domainPrefix: 'd:',
  /** Ready messages waiting for a destination (wait index entries), per destination key. */
  waitPrefix: 'w:',
} as const;

/** Keys of the meta sub-database. */
export const META = {
  layout: 'layout',
  seq: 'seq',
} as const;

/** Bumped when a stored layout changes incompatibly; open refuses other values. */
export const LAYOUT_VERSION = 1;
