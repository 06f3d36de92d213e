// Queue administration actions beyond hold/release/delete (queue-messages-v1.ts):
//   POST /v1/queue/messages/:id/retry                 ready-but-scheduled → due now; 409 leased or held
//   POST /v1/queue/messages/:id/bounce                fail every pending recipient 550 5.0.0, queue the DSN
//   GET  /v1/queue/destinations?limit=N               pending recipients per domain, busiest first
//   POST /v1/queue/destinations/:domain/hold          every message with a pending recipient there
//   POST /v1/queue/destinations/:domain/release       (the whole message, its other recipients too);
//   POST /v1/queue/destinations/:domain/retry         answers {domain, action, messages: count}
//
// The administrator's bounce builds its DSN with the scheduler's builder (delivery/dsn.ts
// buildDsn, the same call as engine.ts's BounceSink) and queues it BEFORE failing the
// recipients, as the scheduler does: a crash between the two can send a bounce twice, never
// lose one. A leased message (a delivery in flight) is refused with 409, retry later.
import { enqueueDsn } from '../../delivery/dsn.js';
import { isId } from '../../queue/ids.js';
import type { MessageRecord, Recipient, ReplyRecord } from '../../queue/store.js';
import type { Api } from '../api.js';
import { messageView } from '../message-view.js';
import { queueFailure } from '../queue-errors.js';
import { fail, ok, type HttpResult, limitParam } from '../respond.js';
import type { Route, RouteContext } from '../router.js';
import { failure, success, type Result } from '../../lib/result.js';

const DEFAULT_DESTINATIONS = 50;
const MAX_DESTINATIONS = 1000;
/** Messages changed per LMDB write transaction by the destination actions. */
export const DESTINATION_BATCH = 500;

const BOUNCE_REPLY: ReplyRecord = { code: 550, enhanced: '5.0.0', text: 'bounced by administrator', command: 'ADMIN' };

/** 409: not in respond.ts's HTTP_ERRORS table yet (the lead adds PST_HTTP_CONFLICT: 409). */
function conflict(message: string): HttpResult {
  return { status: 409, json: { error: { code: 'PST_HTTP_CONFLICT', message } } };
}

function withId(c: RouteContext, fn: (id: string) => Promise<HttpResult>): HttpResult | Promise<HttpResult> {
  const id = c.params.id!;
  if (!isId(id)) return fail('PST_HTTP_MESSAGE_NOT_FOUND', `no message ${JSON.stringify(id)} in the queue (not a message id)`);
  return fn(id);
}

export const retryMessageV1: Route<Api> = {
  method: 'POST',
  path: '/v1/queue/messages/:id/retry',
  auth: true,
  handler: (c, api) =>
    withId(c, async (id) => {
      try {
        const state = await api.deps.queue.retryNow(id);
        if (state === 'leased') return conflict(`message ${id} is being delivered now (leased); retry later`);
        if (state === 'held') return conflict(`message ${id} is held; POST /v1/queue/messages/${id}/release makes it due`);
        api.deps.onQueued?.(); // due now: wake the scheduler
        api.deps.log.info({ id, by: c.clientIp }, 'message retried over HTTP');
        const rec = api.deps.queue.get(id);
        // Gone already: the woken scheduler delivered it in between.
        return ok(rec === undefined ? { id, retried: true } : messageView(rec));
      } catch (err) {
        return queueFailure(err, id);
      }
    }),
};

/** The DSN for an administrator's bounce, through the scheduler's builder. null = none due. */
function queueBounce(api: Api, message: MessageRecord, failed: Recipient[], original: Buffer): Promise<string | null> {
  const items = failed.map((recipient) => ({ recipient, reply: BOUNCE_REPLY, action: 'failed' as const }));
  return enqueueDsn(api.deps.queue, api.deps.config.hostname, message, items, original);
}

export const bounceMessageV1: Route<Api> = {
  method: 'POST',
  path: '/v1/queue/messages/:id/bounce',
  auth: true,
  handler: (c, api) =>
    withId(c, async (id) => {
      const q = api.deps.queue;
      try {
        const rec = q.get(id);
        if (rec === undefined) return fail('PST_HTTP_MESSAGE_NOT_FOUND', `no message ${id} in the queue`);
        if (rec.state === 'leased') return conflict(`message ${id} is being delivered now (leased); retry later`);
        const pending = rec.recipients.filter((r) => r.state === 'pending');
        const original = q.withBody(id, (b) => Buffer.from(b));
        // DSN first (see the file comment), with the replies the recipients are about to get.
        const nowMs = Date.now();
        const asFailed = pending.map((r) => ({ ...r, state: 'failed' as const, lastReply: { ...BOUNCE_REPLY, at: nowMs } }));
        const dsn = await queueBounce(api, rec, asFailed, original);
        const r = await q.failRecipients(id, BOUNCE_REPLY);
        if (!r.ok) {
          // Leased in the instant between: the DSN already queued may be one too many.
          api.deps.log.warn({ id, dsn }, 'bounce over HTTP raced a delivery; its DSN may be spurious');
          return conflict(`message ${id} is being delivered now (leased); retry later`);
        }
        if (dsn !== null) api.deps.onQueued?.(); // the DSN is mail to deliver
        api.deps.log.info({ id, dsn, rcpts: r.value.failed.length, by: c.clientIp }, 'message bounced over HTTP');
        return ok({ id, bounced: r.value.failed.map((x) => x.address), dsn_id: dsn });
      } catch (err) {
        return queueFailure(err, id);
      }
    }),
};

export const listDestinationsV1: Route<Api> = {
  method: 'GET',
  path: '/v1/queue/destinations',
  auth: true,
  handler: (c, api) => {
    const limitOrError = limitParam(c.url, DEFAULT_DESTINATIONS, MAX_DESTINATIONS);
    if (!limitOrError.ok) return limitOrError.error;
    const limit = limitOrError.value;
    try {
      const all = Object.entries(api.deps.queue.counts().byDomain)
        .filter(([, n]) => n > 0)
        .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      return ok({
        destinations: all.slice(0, limit).map(([domain, pending]) => ({ domain, pending })),
        total_domains: all.length,
        truncated: all.length > limit,
      });
    } catch (err) {
      return queueFailure(err);
    }
  },
};

/** The :domain parameter as the queue stores it (recipient.domain), or the 400 to return. */
function domainParam(c: RouteContext): Result<string, HttpResult> {
  const domain = c.params.domain!.toLowerCase().replace(/\.$/, '');
  // No '@', spaces or controls.
  // eslint-disable-next-line no-control-regex
  if (domain === '' || domain.length > 255 || /[\s@\x00-\x1f\x7f]/.test(domain)) {
    return failure(fail('PST_HTTP_BAD_FIELD', `domain: ${JSON.stringify(c.params.domain)} is not a domain`));
  }
  return success(domain);
}

/**
 * Bounce (DSN to each sender) or delete (no DSN) the pending recipients of one domain, at most
 * DESTINATION_BATCH messages per request (`more: true` says to call again). As for one
 * message, the DSN is queued before the recipients are failed: a crash can duplicate one,
 * never lose one; a message leased meanwhile is skipped (and counted).
 */
function destinationFail(action: 'bounce' | 'delete'): Route<Api> {
  return {
    method: action === 'bounce' ? 'POST' : 'DELETE',
    path: action === 'bounce' ? '/v1/queue/destinations/:domain/bounce' : '/v1/queue/destinations/:domain',
    auth: true,
    handler: async (c, api) => {
      const domainOrError = domainParam(c);
      if (!domainOrError.ok) return domainOrError.error;
      const domain = domainOrError.value;
      const q = api.deps.queue;
      const reply: ReplyRecord = { ...BOUNCE_REPLY, text: action === 'bounce' ? 'bounced by administrator' : 'deleted by administrator' };
      try {
        const ids = q.idsForDomain(domain, DESTINATION_BATCH + 1);
        let recipients = 0;
        let messages = 0;
        let skipped = 0;
        let dsns = 0;
        for (const id of ids.slice(0, DESTINATION_BATCH)) {
          const rec = q.get(id);
          if (!rec || rec.state === 'leased') {
            skipped++;
            continue;
          }
          if (action === 'bounce') {
            const pending = rec.recipients.filter((r) => r.state === 'pending' && r.domain === domain);
            const original = q.withBody(id, (b) => Buffer.from(b));
            if ((await queueBounce(api, rec, pending, original)) !== null) dsns++;
          }
          const r = await q.failRecipients(id, reply, domain);
          if (!r.ok) {
            skipped++;
            continue;
          }
          messages++;
          recipients += r.value.failed.length;
        }
        if (dsns > 0) api.deps.onQueued?.();
        api.deps.log.info({ domain, action, messages, recipients, skipped, dsns, by: c.clientIp }, 'destination action over HTTP');
        return ok({ domain, action, messages, recipients, skipped, dsns, more: ids.length > DESTINATION_BATCH });
      } catch (err) {
        return queueFailure(err);
      }
    },
  };
}

export const bounceDestinationV1 = destinationFail('bounce');
export const deleteDestinationV1 = destinationFail('delete');

function destinationAction(action: 'hold' | 'release' | 'retry'): Route<Api> {
  return {
    method: 'POST',
    path: `/v1/queue/destinations/:domain/${action}`,
    auth: true,
    handler: async (c, api) => {
      const domainOrError = domainParam(c);
      if (!domainOrError.ok) return domainOrError.error;
      const domain = domainOrError.value;
      try {
        const n = await api.deps.queue.applyToDomain(domain, action, DESTINATION_BATCH);
        if (action !== 'hold' && n > 0) api.deps.onQueued?.();
        api.deps.log.info({ domain, action, messages: n, by: c.clientIp }, 'destination action over HTTP');
        return ok({ domain, action, messages: n });
      } catch (err) {
        return queueFailure(err);
      }
    },
  };
}

export const holdDestinationV1 = destinationAction('hold');
export const releaseDestinationV1 = destinationAction('release');
export const retryDestinationV1 = destinationAction('retry');
