// What a route hands back (HttpResult, a value) and the one JSON error shape of the HTTP API:
// { "error": { "code": "PST_HTTP_…", "message": "…" } }. Every PST_HTTP_* code is in HTTP_ERRORS
// with its status, so the codes stay stable and docs can list them from one table.
import { failure, success, type Result } from '../lib/result.js';

export const HTTP_ERRORS = {
  PST_HTTP_UNAUTHORIZED: 401,
  PST_HTTP_HOST_NOT_ALLOWED: 403,
  PST_HTTP_CROSS_ORIGIN: 403,
  PST_HTTP_NOT_FOUND: 404,
  PST_HTTP_CONFLICT: 409,
  PST_HTTP_RATE_LIMITED: 429,
  PST_HTTP_METHOD_NOT_ALLOWED: 405,
  PST_HTTP_BODY_TOO_LARGE: 413,
  PST_HTTP_MESSAGE_TOO_LARGE: 413,
  PST_HTTP_UNSUPPORTED_MEDIA_TYPE: 415,
  PST_HTTP_BAD_JSON: 400,
  PST_HTTP_BAD_FIELD: 400,
  PST_HTTP_BAD_REQUEST: 400,
  PST_HTTP_RECIPIENT_SUPPRESSED: 422,
  PST_HTTP_UNKNOWN_POOL: 422,
  PST_HTTP_MESSAGE_NOT_FOUND: 404,
  PST_HTTP_NOT_READY: 503,
  PST_HTTP_QUEUE_UNAVAILABLE: 503,
  PST_HTTP_INTERNAL: 500,
} as const;

export type HttpErrorCode = keyof typeof HTTP_ERRORS;

export interface HttpResult {
  status: number;
  /** Serialised as JSON unless `text` is set. */
  json?: unknown;
  text?: string;
  contentType?: string;
  headers?: Record<string, string>;
}

export function ok(json: unknown, status = 200): HttpResult {
  return { status, json };
}

export function fail(code: HttpErrorCode, message: string, headers?: Record<string, string>): HttpResult {
  const r: HttpResult = { status: HTTP_ERRORS[code], json: { error: { code, message } } };
  if (headers !== undefined) r.headers = headers;
  return r;
}

/** The `limit` query parameter of a list endpoint: a number, or the 400 to return. */
export function limitParam(url: URL, defaultLimit: number, maxLimit: number): Result<number, HttpResult> {
  const raw = url.searchParams.get('limit');
  if (raw === null) return success(defaultLimit);
  if (!/^[0-9]{1,7}$/.test(raw) || Number(raw) < 1 || Number(raw) > maxLimit) {
    return failure(fail('PST_HTTP_BAD_FIELD', `limit: must be an integer from 1 to ${maxLimit}`));
  }
  return success(Number(raw));
}
