// The one shape of an outcome in postern. An operation that either works or does not returns
// Result<T, E>, tagged by `ok`: { ok: true, value } or { ok: false, error }, where the error
// says why (a sentence, a Reply, an HttpResult). An outcome with more than two cases (a
// recipient delivered, deferred or failed; a reply read, partial or malformed) is a union
// tagged by `kind`, one string per case, each case carrying only its own fields.
import assert from 'node:assert/strict';

export type Result<T, E> = { ok: true; value: T } | { ok: false; error: E };

export function success<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

export function failure<E>(error: E): { ok: false; error: E } {
  return { ok: false, error };
}

/** The value of a Result that cannot fail, such as a parse of a constant; a failure is a bug. */
export function valueOf<T>(r: Result<T, unknown>): T {
  assert.ok(r.ok, `expected a value, got the error ${JSON.stringify(r.ok ? null : r.error)}`);
  return r.value;
}
