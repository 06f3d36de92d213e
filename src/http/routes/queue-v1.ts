// GET /v1/queue: message counts by state (ready, scheduled, leased, held), by priority, and
// pending recipients by destination domain, as of the last commit (Queue.counts()), and how
// many corrupt records were set aside.
import type { Api } from '../api.js';
import { queueFailure } from '../queue-errors.js';
import { ok } from '../respond.js';
import type { Route } from '../router.js';

export const queueV1: Route<Api> = {
  method: 'GET',
  path: '/v1/queue',
  auth: true,
  handler: (_c, api) => {
    try {
      const c = api.deps.queue.counts();
      return ok({ total: c.total, by_state: c.byState, by_priority: c.byPriority, by_domain: c.byDomain, corrupt_records: api.deps.queue.corruptCount() });
    } catch (err) {
      return queueFailure(err);
    }
  },
};
