// GET /metrics: Prometheus text exposition 0.0.4 of the SMTP, HTTP, queue, delivery and
// process counters. No token unless POSTERN_METRICS_AUTH (server.ts checks it); queue counts
// come from the once-a-second cache (cached-counts.ts): a flood of scrapes costs one count a second.
// Every family is always present, with zeros when a part is off, so dashboards never gap.
import type { Api } from '../api.js';
import { PROM_CONTENT_TYPE, PromText, type Sample } from '../prom-text.js';
import type { Route } from '../router.js';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { LATENCY_BUCKETS_S, MAX_DESTINATION_SERIES } from '../../delivery/destination-stats.js';
import { TLS_FALLBACK_HOLD_MS } from '../../delivery/tls-fallback.js';

/** One sample per destination with messages waiting, the largest first, the rest summed as "other". */
function waitingSamples(waiting: Record<string, number>): Sample[] {
  const sorted = Object.entries(waiting).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const out: Sample[] = sorted.slice(0, MAX_DESTINATION_SERIES).map(([destination, n]) => [{ destination }, n]);
  let other = 0;
  for (const [, n] of sorted.slice(MAX_DESTINATION_SERIES)) other += n;
  if (other > 0) out.push([{ destination: 'other' }, other]);
  return out;
}

export function renderMetrics(api: Api): string {
  const smtp = api.deps.smtpCounters();
  const d = api.deps.delivery();
  const st = api.stats;
  const q = api.deps.queue;
  const p = new PromText();

  p.family('postern_smtp_connections_total', 'counter', 'SMTP connections accepted.', [[null, smtp.connections]]);
  p.one('postern_smtp_connections_rejected_total', 'counter', 'SMTP connections refused (limits, draining).', smtp.connectionsRejected);
  p.family('postern_messages_received_total', 'counter', 'Messages durably queued, by the way they came in.', [
    [{ source: 'smtp' }, smtp.messagesAccepted],
    [{ source: 'http' }, st.messagesInjected],
  ]);
  p.family('postern_messages_rejected_total', 'counter', 'Messages refused at the end of the transaction (queue write failed or back-pressure).', [
    [{ source: 'smtp' }, smtp.messagesRejected],
    [{ source: 'http' }, st.messagesRejected],
  ]);
  p.family('postern_received_bytes_total', 'counter', 'Bytes of the messages queued (without the Received header for HTTP).', [
    [{ source: 'smtp' }, smtp.bytesAccepted],
    [{ source: 'http' }, st.bytesInjected],
  ]);
  p.one('postern_smtp_recipients_accepted_total', 'counter', 'RCPT TO accepted.', smtp.recipientsAccepted);
  p.one('postern_smtp_recipients_rejected_total', 'counter', 'RCPT TO refused.', smtp.recipientsRejected);
  p.one('postern_smtp_auth_failures_total', 'counter', 'Failed AUTH attempts.', smtp.authFailures);
  p.one('postern_smtp_tls_handshakes_total', 'counter', 'Completed TLS handshakes (STARTTLS and implicit TLS).', smtp.tlsHandshakes);
  const mem = api.deps.bodyMemory?.();
  if (mem !== undefined) {
    p.one('postern_smtp_body_memory_bytes', 'gauge', 'Bytes of message data the SMTP sessions hold now (until each body is answered).', mem.held);
    p.one('postern_smtp_body_memory_peak_bytes', 'gauge', 'The most bytes of message data the SMTP sessions held at once since start.', mem.peak);
    p.one('postern_smtp_body_memory_limit_bytes', 'gauge', 'POSTERN_MAX_BODY_MEMORY.', mem.limit);
    p.one('postern_smtp_sessions_waiting_for_memory', 'gauge', 'SMTP sessions not reading their body now: the body memory is past its limit.', mem.waiting);
    p.one('postern_smtp_body_memory_waits_total', 'counter', 'Times an SMTP session stopped reading its body for lack of body memory.', mem.waits);
    p.one('postern_smtp_body_memory_client_limit_bytes', 'gauge', 'POSTERN_MAX_BODY_MEMORY_PER_CLIENT: each client\'s share of the body memory.', mem.perClient);
    p.one('postern_smtp_body_memory_clients', 'gauge', 'Clients (outside the trusted networks) whose sessions hold message data now.', mem.clients);
    p.one('postern_smtp_body_memory_share_waits_total', 'counter', 'Of the waits for body memory, those of a session whose client held more than its share while the total had room.', mem.shareWaits);
  }

  p.family('postern_deliveries_total', 'counter', 'Recipient delivery outcomes.', [
    [{ outcome: 'delivered' }, d?.delivered ?? 0],
    [{ outcome: 'deferred' }, d?.deferred ?? 0],
    [{ outcome: 'bounced' }, d?.bounced ?? 0],
  ]);
  p.one('postern_delivery_attempts_total', 'counter', 'Delivery attempts (one per message and destination).', d?.attempts ?? 0);
  p.one('postern_bounces_sent_total', 'counter', 'Delivery status notifications queued.', d?.bouncesSent ?? 0);
  p.one('postern_delivery_in_flight', 'gauge', 'Deliveries running now.', d?.inFlight ?? 0);
  p.family('postern_delivery_tls_fallbacks_total', 'counter', `Outbound connections in clear under opportunistic TLS: retry = the TLS handshake failed and the same address was connected to again in clear; clear = STARTTLS not tried, the host's TLS failed within the last ${TLS_FALLBACK_HOLD_MS / 60_000} min (docs/delivery.md).`, [
    [{ kind: 'retry' }, d?.tlsFallbackRetries ?? 0],
    [{ kind: 'clear' }, d?.tlsFallbackClear ?? 0],
  ]);
  p.one('postern_delivery_in_flight_bytes', 'gauge', 'Bytes of the messages being delivered now (POSTERN_MAX_DELIVERY_MEMORY bounds it).', d?.inFlightBytes ?? 0);
  const b = api.deps.bounces?.() ?? null;
  p.family('postern_delivery_failures_total', 'counter', 'Recipient failures by bounce category (docs/bounces.md) and kind: bounced/deferred (the next hop\'s reply or a local failure), async-bounced/async-deferred (a DSN that came back).', (b?.failures ?? []).map((f) => [{ category: f.category, kind: f.kind }, f.count]));
  const r = b?.reports ?? null;
  p.family('postern_bounce_reports_total', 'counter', 'Reports read by the bounce processor, by type (other: not a DSN or ARF report, too large or unreadable: ignored).', [
    [{ type: 'dsn' }, r?.dsn ?? 0],
    [{ type: 'arf' }, r?.arf ?? 0],
    [{ type: 'other' }, r?.ignored ?? 0],
  ]);
  p.one('postern_bounce_reports_unmatched_total', 'counter', 'DSN and ARF reports about no message of ours (no valid VERP tag, no Message-ID of ours).', r?.unmatched ?? 0);
  p.one('postern_complaints_total', 'counter', 'ARF complaints (abuse, fraud, virus, other) about our mail.', r?.complaints ?? 0);
  p.one('postern_suppressions_added_total', 'counter', 'Recipients added to the suppression list by reports (POSTERN_SUPPRESS_ON).', r?.suppressed ?? 0);
  p.one('postern_verp_skipped_total', 'counter', 'Outbound transactions sent with the real sender because the VERP address would pass 64 octets.', b?.verpSkipped ?? 0);

  let counts: ReturnType<typeof q.counts> | null = null;
  let corrupt = 0;
  let waiting: Record<string, number> = {};
  try {
    counts = api.counts.get();
    corrupt = q.corruptCount();
    waiting = api.waiting.get();
  } catch {
    counts = null; // queue closing: report zeros rather than fail the scrape
  }
  const bs = counts?.byState ?? { ready: 0, scheduled: 0, leased: 0, held: 0 };
  const bp = counts?.byPriority ?? { urgent: 0, normal: 0, bulk: 0 };
  p.family('postern_queue_messages', 'gauge', 'Messages in the queue by state (ready = due now, scheduled = waiting for a retry or send_at).', [
    [{ state: 'ready' }, bs.ready],
    [{ state: 'scheduled' }, bs.scheduled],
    [{ state: 'leased' }, bs.leased],
    [{ state: 'held' }, bs.held],
  ]);
  p.family('postern_queue_messages_by_priority', 'gauge', 'Messages in the queue by priority.', [
    [{ priority: 'urgent' }, bp.urgent],
    [{ priority: 'normal' }, bp.normal],
    [{ priority: 'bulk' }, bp.bulk],
  ]);
  p.one('postern_queue_corrupt_records', 'gauge', 'Queue records (or bodies) found corrupt and set aside, kept in the corrupt sub-database (see postern queue check).', corrupt);
  const qs = q.stats();
  p.one('postern_queue_commits_total', 'counter', 'LMDB write transactions (each at most one fsync).', qs.commits);
  p.one('postern_queue_enqueue_commits_total', 'counter', 'LMDB write transactions that carried enqueues (group commit: committed messages / these).', qs.enqueueCommits);
  p.one('postern_queue_committed_messages_total', 'counter', 'Messages whose enqueue committed (group commit: compare with enqueue commits).', qs.messagesCommitted);
  p.one('postern_queue_committed_bytes_total', 'counter', 'Body and record bytes committed.', qs.bytesCommitted);
  p.one('postern_queue_failed_commits_total', 'counter', 'LMDB write transactions that failed.', qs.failedCommits);

  const dests = api.deps.destinations?.() ?? null;
  const dsamples: Sample[] = [];
  const series: Array<{ labels: { destination: string }; buckets: number[]; sum: number; count: number }> = [];
  if (dests) {
    for (const [destination, s] of dests) {
      dsamples.push([{ destination, outcome: 'delivered' }, s.delivered], [{ destination, outcome: 'deferred' }, s.deferred], [{ destination, outcome: 'bounced' }, s.bounced]);
      series.push({ labels: { destination }, buckets: s.buckets, sum: s.latencySum, count: s.latencyCount });
    }
  }
  p.family('postern_destination_deliveries_total', 'counter', 'Recipient outcomes per destination (MX site or route; at most 500 series, then "other").', dsamples);
  p.family('postern_destination_waiting', 'gauge', `Messages waiting for a destination that is down to answer again (released, paced, as soon as it does; at most ${MAX_DESTINATION_SERIES} series, the busiest, then "other").`, waitingSamples(waiting));
  p.histogram('postern_destination_delivery_seconds', 'Time of one delivery transaction per destination (connection from the pool to the final reply).', LATENCY_BUCKETS_S, series);
  const alerts = api.deps.alerts?.() ?? null;
  p.family('postern_alert_active', 'gauge', 'Anomaly alerts up now, 1 per rule and scope (docs/alerts.md); a series disappears when its alert clears.', (alerts?.active ?? []).map((a) => [{ rule: a.rule, scope: a.scope }, 1]));
  p.one('postern_alerts_raised_total', 'counter', 'Anomaly alerts raised since start.', alerts?.raised ?? 0);
  const util = api.deps.filterUtilization?.() ?? null;
  p.one('postern_filter_worker_utilization_ratio', 'gauge', 'Share of the filter workers\' time spent running filters (0 when no filter is configured).', util ?? 0);
  const fb = api.deps.filterBatches?.() ?? null;
  p.one('postern_filter_batches_total', 'counter', 'Tasks sent to the filter workers (each carries one or more messages).', fb?.batches ?? 0);
  p.one('postern_filter_batched_messages_total', 'counter', 'Messages sent to the filter workers (divided by postern_filter_batches_total: the mean batch).', fb?.messages ?? 0);
  const fl = api.deps.filterLoad?.() ?? null;
  p.one('postern_filter_workers', 'gauge', 'Filter worker threads (0 when no filter is configured).', fl?.workers ?? 0);
  p.one('postern_filter_busy_worker_seconds_total', 'counter', 'Worker-seconds during which a filter worker had a batch (rate() / postern_filter_workers: the utilization the filter-utilization alert uses).', (fl?.busyWorkerMs ?? 0) / 1000);
  p.one('postern_filter_oldest_wait_seconds', 'gauge', 'How long the oldest message waiting for a filter worker has waited (0: none waits).', (fl?.oldestWaitMs ?? 0) / 1000);
  p.one('postern_circuit_breakers_open', 'gauge', 'Destinations whose circuit breaker is open or half-open (deferred untried until a probe succeeds).', api.deps.openCircuits?.() ?? 0);
  const qsample = alerts?.queueSample ?? null;
  p.one('postern_queue_oldest_message_age_seconds', 'gauge', 'Age of the oldest queued message that is not held, as the alerts last sampled it (0: none; docs/alerts.md).', qsample?.oldestAt != null ? Math.max(0, Date.now() - qsample.oldestAt) / 1000 : 0);
  const ev = api.deps.events?.() ?? null;
  p.one('postern_events_pending', 'gauge', 'Events in the durable log waiting for the event webhook (POSTERN_EVENTS_URL).', ev?.pending ?? 0);
  p.one('postern_events_sent_total', 'counter', 'Events the event webhook acknowledged.', ev?.sent ?? 0);
  p.one('postern_events_post_failures_total', 'counter', 'Event batches the event webhook failed or refused (kept and retried).', ev?.failures ?? 0);
  p.one('postern_events_dropped_total', 'counter', 'Events dropped unsent past POSTERN_EVENTS_MAX or POSTERN_EVENTS_MAX_AGE.', ev?.dropped ?? 0);
  p.one('postern_events_rejections_aggregated_total', 'counter', 'Rejections of untrusted clients folded into per-client summary events.', ev?.aggregated ?? 0);
  let mapBytes = 0;
  try {
    mapBytes = statSync(join(api.deps.config.dataDir, 'data.mdb')).size;
  } catch {
    mapBytes = 0;
  }
  p.one('postern_queue_file_bytes', 'gauge', 'Size of the LMDB data file.', mapBytes);

  const req: Sample[] = [];
  for (const r of st.requests.values()) req.push([{ method: r.method, route: r.route, code: String(r.code) }, r.n]);
  p.family('postern_http_requests_total', 'counter', 'HTTP API requests by route pattern and status code.', req);

  api.process.render(p);
  return p.toString();
}

export const metricsV1: Route<Api> = {
  method: 'GET',
  path: '/metrics',
  auth: false,
  handler: (_c, api) => ({ status: 200, text: renderMetrics(api), contentType: PROM_CONTENT_TYPE }),
};
