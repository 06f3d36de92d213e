// Queue administration of single messages:
//   GET    /v1/queue/messages?limit=N&after=ID&id=&sender=&recipient=&domain=&state=
//                                          list in arrival order (summaries), filtered, paged by
//                                          cursor; a bounded scan (queue-browse.ts)
//   GET    /v1/queue/messages/:id           envelope, per-recipient state, attempts, last reply
//   GET    /v1/queue/messages/:id/headers   the header fields of the stored message
//   POST   /v1/queue/messages/:id/hold      take out of circulation
//   POST   /v1/queue/messages/:id/release   due now (held or scheduled)
//   DELETE /v1/queue/messages/:id           remove message and body
// An id that is not of the queue's shape is 404 like an absent one: nothing to look up.
import { isId } from '../../queue/ids.js';
import { headerFields, headerSection, MAX_HEADER_BYTES } from '../../lib/header-section.js';
import type { Api } from '../api.js';
import { messageSummary, messageView } from '../message-view.js';
import { browsePage, parseBrowseQuery, scanStart } from '../queue-browse.js';
import { queueFailure } from '../queue-errors.js';
import { fail, ok, type HttpResult } from '../respond.js';
import type { Route, RouteContext } from '../router.js';

export const listMessagesV1: Route<Api> = {
  method: 'GET',
  path: '/v1/queue/messages',
  auth: true,
  handler: (c, api) => {
    const query = parseBrowseQuery(c.url);
    if (!query.ok) return query.error;
    try {
      const nowMs = Date.now();
      const from = scanStart(query.value);
      const p = browsePage(api.deps.queue.scan(from.after, from.start), query.value, nowMs);
      // `next`: pass it as ?after= (with the same filters) for the following page; null at the
      // end. A page can be short, even empty, while next is not null: the scan stopped at its
      // bound (scan_limited) before the page was full.
      return ok({
        messages: p.messages.map((m) => messageSummary(m, nowMs)),
        truncated: p.next !== null,
        next: p.next,
        scanned: p.scanned,
        scan_limited: p.scanLimited,
      });
    } catch (err) {
      return queueFailure(err);
    }
  },
};

function withId(c: RouteContext, fn: (id: string) => HttpResult | Promise<HttpResult>): HttpResult | Promise<HttpResult> {
  const id = c.params.id!;
  if (!isId(id)) return fail('PST_HTTP_MESSAGE_NOT_FOUND', `no message ${JSON.stringify(id)} in the queue (not a message id)`);
  return fn(id);
}

function show(api: Api, id: string): HttpResult {
  const rec = api.deps.queue.get(id);
  return rec === undefined ? fail('PST_HTTP_MESSAGE_NOT_FOUND', `no message ${id} in the queue`) : ok(messageView(rec));
}

export const showMessageV1: Route<Api> = {
  method: 'GET',
  path: '/v1/queue/messages/:id',
  auth: true,
  handler: (c, api) =>
    withId(c, (id) => {
      try {
        return show(api, id);
      } catch (err) {
        return queueFailure(err, id);
      }
    }),
};

export const messageHeadersV1: Route<Api> = {
  method: 'GET',
  path: '/v1/queue/messages/:id/headers',
  auth: true,
  handler: (c, api) =>
    withId(c, (id) => {
      try {
        const section = api.deps.queue.withBody(id, headerSection);
        return ok({ id, headers: headerFields(section.bytes), truncated: section.truncated, max_bytes: MAX_HEADER_BYTES });
      } catch (err) {
        return queueFailure(err, id);
      }
    }),
};

function action(name: 'hold' | 'release'): Route<Api> {
  return {
    method: 'POST',
    path: `/v1/queue/messages/:id/${name}`,
    auth: true,
    handler: (c, api) =>
      withId(c, async (id) => {
        try {
          await api.deps.queue[name](id);
          if (name === 'release') api.deps.onQueued?.(); // due now: wake the scheduler
          api.deps.log.info({ id, by: c.clientIp }, `message ${name === 'hold' ? 'held' : 'released'} over HTTP`);
          return show(api, id);
        } catch (err) {
          return queueFailure(err, id);
        }
      }),
  };
}

export const holdMessageV1 = action('hold');
export const releaseMessageV1 = action('release');

export const deleteMessageV1: Route<Api> = {
  method: 'DELETE',
  path: '/v1/queue/messages/:id',
  auth: true,
  handler: (c, api) =>
    withId(c, async (id) => {
      try {
        await api.deps.queue.remove(id);
        api.deps.log.info({ id, by: c.clientIp }, 'message deleted over HTTP');
        return ok({ id, deleted: true });
      } catch (err) {
        return queueFailure(err, id);
      }
    }),
};
