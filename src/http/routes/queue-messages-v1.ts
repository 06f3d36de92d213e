// Queue administration of single messages:
//   GET    /v1/queue/messages?limit=N&after=ID  list in arrival order (summaries), paged by cursor
//   GET    /v1/queue/messages/:id           envelope, per-recipient state, attempts, last reply
//   POST   /v1/queue/messages/:id/hold      take out of circulation
//   POST   /v1/queue/messages/:id/release   due now (held or scheduled)
//   DELETE /v1/queue/messages/:id           remove message and body
// An id that is not of the queue's shape is 404 like an absent one: nothing to look up.
import { isId } from '../../queue/ids.js';
import type { Api } from '../api.js';
import { messageSummary, messageView } from '../message-view.js';
import { queueFailure } from '../queue-errors.js';
import { fail, ok, type HttpResult, limitParam } from '../respond.js';
import type { Route, RouteContext } from '../router.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

export const listMessagesV1: Route<Api> = {
  method: 'GET',
  path: '/v1/queue/messages',
  auth: true,
  handler: (c, api) => {
    const limitOrError = limitParam(c.url, DEFAULT_LIMIT, MAX_LIMIT);
    if (!limitOrError.ok) return limitOrError.error;
    const limit = limitOrError.value;
    try {
      // One more than asked tells whether there are more.
      const after = c.url.searchParams.get('after') ?? undefined;
      const recs = api.deps.queue.list(limit + 1, after);
      const page = recs.slice(0, limit);
      const truncated = recs.length > limit;
      // `next`: pass it as ?after= for the following page (null on the last page).
      return ok({ messages: page.map(messageSummary), truncated, next: truncated ? page[page.length - 1]!.id : null });
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
