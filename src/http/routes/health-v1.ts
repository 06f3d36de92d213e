// GET /health (liveness: the event loop answers) and GET /ready (readiness: queue open,
// listeners up, not draining, as reported by main.ts). Neither needs the token, so probes
// and load balancers can call them.
import type { Api } from '../api.js';
import { fail, ok } from '../respond.js';
import type { Route } from '../router.js';

export const healthV1: Route<Api> = {
  method: 'GET',
  path: '/health',
  auth: false,
  handler: () => ok({ status: 'ok' }),
};

export const readyV1: Route<Api> = {
  method: 'GET',
  path: '/ready',
  auth: false,
  handler: (_c, api) => (api.deps.ready() ? ok({ status: 'ready' }) : fail('PST_HTTP_NOT_READY', 'not ready: starting, draining or the queue is closed')),
};
