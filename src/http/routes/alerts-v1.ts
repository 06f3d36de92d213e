// GET /v1/alerts: the anomaly alerts up now (docs/alerts.md), oldest first, each with its id,
// rule, scope, since (ISO 8601), value and threshold; an empty list when delivery is off.
import type { Api } from '../api.js';
import { ok } from '../respond.js';
import type { Route } from '../router.js';

export const alertsV1: Route<Api> = {
  method: 'GET',
  path: '/v1/alerts',
  auth: true,
  handler: (_c, api) => {
    const engine = api.deps.alerts?.() ?? null;
    const alerts = (engine?.active ?? []).map((a) => ({
      id: a.id,
      rule: a.rule,
      scope: a.scope,
      since: new Date(a.since).toISOString(),
      // A suspension's value is when it ends; a rate's is the share of the window (0-1).
      ...(a.rule === 'suspended' ? { until: new Date(a.value).toISOString() } : { value: a.value, threshold: a.threshold }),
    }));
    return ok({ alerts, raised_total: engine?.raised ?? 0, cleared_total: engine?.cleared ?? 0 });
  },
};
