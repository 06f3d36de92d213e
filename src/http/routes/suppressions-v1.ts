// The suppression list (Queue.suppressions, src/queue/suppressions.ts):
//   GET    /v1/suppressions?limit=N&after=ADDR   page in address order; `next` is the next `after`
//   PUT    /v1/suppressions/:address             body {"reason": "…"} optional → 201 new, 200 updated
//   DELETE /v1/suppressions/:address             200 removed, 404 not listed
// Addresses are matched with both parts lower-cased (see suppressions.ts); answers show that form.
// The scheduler fails a suppressed recipient with 550 5.7.1 "recipient suppressed" and reports it
// in the sender's bounce, without ever trying it.
import { normalizeSuppressed, type Suppression } from '../../queue/suppressions.js';
import type { Api } from '../api.js';
import { readJsonObject } from '../body.js';
import { queueFailure } from '../queue-errors.js';
import { fail, ok, type HttpResult, limitParam } from '../respond.js';
import type { Method, Route, RouteContext } from '../router.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;
const MAX_REASON_CHARS = 500;
// C0, DEL, C1 and the Unicode line separators: never stored, never echoed into logs or pages.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;

// router.ts's Method has no 'PUT' yet (server.ts already accepts PUT as a known method, and
// Router.match compares strings): the lead adds 'PUT' to Method and this cast goes away.
const PUT: Method = 'PUT';

function view(s: Suppression): { address: string; reason: string | null; added_at: string } {
  return { address: s.address, reason: s.reason, added_at: new Date(s.addedAt).toISOString() };
}

function addressParam(c: RouteContext): string | HttpResult {
  const raw = c.params.address!;
  if (CONTROL.test(raw)) return fail('PST_HTTP_BAD_FIELD', 'address: control characters are not allowed');
  const key = normalizeSuppressed(raw);
  if (key === null || /\s/.test(key)) return fail('PST_HTTP_BAD_FIELD', `address: ${JSON.stringify(raw)} is not an address (local@domain)`);
  return key;
}

export const listSuppressionsV1: Route<Api> = {
  method: 'GET',
  path: '/v1/suppressions',
  auth: true,
  handler: (c, api) => {
    const limitOrError = limitParam(c.url, DEFAULT_LIMIT, MAX_LIMIT);
    if (!limitOrError.ok) return limitOrError.error;
    const limit = limitOrError.value;
    const after = c.url.searchParams.get('after') ?? undefined;
    try {
      const items = api.deps.queue.suppressions.list({ limit: limit + 1, ...(after !== undefined ? { after } : {}) });
      const page = items.slice(0, limit);
      const more = items.length > limit;
      return ok({ suppressions: page.map(view), count: api.deps.queue.suppressions.count(), next: more ? page[page.length - 1]!.address : null });
    } catch (err) {
      return queueFailure(err);
    }
  },
};

export const putSuppressionV1: Route<Api> = {
  method: PUT,
  path: '/v1/suppressions/:address',
  auth: true,
  handler: async (c, api) => {
    const key = addressParam(c);
    if (typeof key !== 'string') return key;
    let reason: string | undefined;
    // The body is optional: none (or an empty one) means no reason.
    const hasBody = (c.req.headers['content-length'] !== undefined && c.req.headers['content-length'] !== '0') || c.req.headers['transfer-encoding'] !== undefined;
    if (hasBody) {
      const j = await readJsonObject(c);
      if (!j.ok) return j.error;
      for (const k of Object.keys(j.value)) if (k !== 'reason') return fail('PST_HTTP_BAD_FIELD', `${k}: unknown field`);
      const r = j.value.reason;
      if (r !== undefined && r !== null) {
        if (typeof r !== 'string' || CONTROL.test(r) || r.length > MAX_REASON_CHARS) {
          return fail('PST_HTTP_BAD_FIELD', `reason: must be a string of at most ${MAX_REASON_CHARS} characters without control characters`);
        }
        reason = r;
      }
    }
    try {
      const created = await api.deps.queue.suppressions.add(key, reason);
      api.deps.log.info({ address: key, created, by: c.clientIp }, 'suppression set over HTTP');
      const s = api.deps.queue.suppressions.get(key);
      return ok({ ...view(s ?? { address: key, reason: reason ?? null, addedAt: Date.now() }), created }, created ? 201 : 200);
    } catch (err) {
      return queueFailure(err);
    }
  },
};

export const deleteSuppressionV1: Route<Api> = {
  method: 'DELETE',
  path: '/v1/suppressions/:address',
  auth: true,
  handler: async (c, api) => {
    const key = addressParam(c);
    if (typeof key !== 'string') return key;
    try {
      const removed = await api.deps.queue.suppressions.remove(key);
      if (!removed) return fail('PST_HTTP_NOT_FOUND', `${key} is not on the suppression list`);
      api.deps.log.info({ address: key, by: c.clientIp }, 'suppression removed over HTTP');
      return ok({ address: key, deleted: true });
    } catch (err) {
      return queueFailure(err);
    }
  },
};
