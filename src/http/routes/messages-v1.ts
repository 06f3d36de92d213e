// POST /v1/messages: inject a message, in one of two forms.
//  Raw:  { "from": "a@b", "to": ["c@d"], "raw": "…" | "raw_base64": "…",
//          "priority": "urgent|normal|bulk", "send_at": "2030-01-01T00:00:00Z" }
//  Structured (no raw/raw_base64, and at least one of subject, text, html, attachments,
//  headers, cc, bcc, substitutions): from/to/cc/bcc/subject/text/html/headers/attachments
//  composed into MIME by compose.ts (see there), plus the campaign form `substitutions`
//  (one message per to address). Without substitutions the recipients (to+cc+bcc, deduplicated)
//  are split into envelopes of at most maxRecipients sharing one composed body. At most
//  MAX_REQUEST_RECIPIENTS (10,000) recipients per request.
//  Reply: 202 { "id", "ids": [id], "count": 1 } for one message, { "ids": […], "count": n } for more.
//  Both forms take "pool": the shaping pool the message leaves from (docs/shaping.md), over the
//  sender-domain rule; a pool the node does not have is 422 PST_HTTP_UNKNOWN_POOL. A raw
//  message's X-Postern-Pool field is removed; it names the pool when the request does not.
// A recipient on the suppression list refuses the whole request: 422
// PST_HTTP_RECIPIENT_SUPPRESSED, `error.suppressed` listing them with their reasons (at most 100).
// Every field is checked before anything is stored, and a control character (CR, LF, NUL, …)
// in any envelope field is refused, so no field can inject a header or an SMTP command. The
// 202 is sent only after the queue's commit is on disk (as the SMTP path's 250).
import { isMailbox } from '../../protocol/address.js';
import { MAX_POOL_NAME_CHARS, takePoolHeader } from '../../protocol/pool-header.js';
import { PRIORITY, type EnvelopeInput, type Priority } from '../../queue/store.js';
import type { Api } from '../api.js';
import { readJsonObject } from '../body.js';
import { queueFailure } from '../queue-errors.js';
import { has8bit, httpReceivedHeader, toCrlf } from '../raw-message.js';
import { composeMessage, parseStructured, type Mailbox, type Structured } from '../compose.js';
import { fail, type HttpResult } from '../respond.js';
import { failure, success, type Result } from '../../lib/result.js';
import type { Route, RouteContext } from '../router.js';

const FIELDS = new Set(['from', 'to', 'raw', 'raw_base64', 'priority', 'send_at', 'pool']);
// C0, DEL, C1, and the Unicode line/paragraph separators.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets. */
const MAX_ADDRESS_BYTES = 254;

type Injection = Result<{ env: EnvelopeInput; raw: Buffer }, HttpResult>;

function bad(field: string, why: string): { ok: false; error: HttpResult } {
  return failure(fail('PST_HTTP_BAD_FIELD', `${field}: ${why}`));
}

function checkAddress(field: string, v: unknown, allowNull: boolean): Result<string, HttpResult> {
  if (typeof v !== 'string') return bad(field, 'must be a string');
  if (CONTROL.test(v)) return bad(field, 'control characters (CR, LF, NUL, …) are not allowed');
  if (v === '' && allowNull) return success(v);
  if (Buffer.byteLength(v) > MAX_ADDRESS_BYTES || !isMailbox(v)) return bad(field, `${JSON.stringify(v)} is not a mailbox (local@domain)`);
  return success(v);
}

/**
 * The `pool` field (or a raw message's X-Postern-Pool, `field` says which): absent, or a pool
 * of the shaping file now. A pool it does not have is 422: the request is well formed, the
 * node cannot honour it (a typo must not send from the wrong addresses).
 */
function checkPool(api: Api, field: string, v: unknown): Result<string | undefined, HttpResult> {
  if (v === undefined) return success(undefined);
  if (typeof v !== 'string') return bad(field, 'must be a string, the name of a pool of the shaping file');
  if (v.length > MAX_POOL_NAME_CHARS || CONTROL.test(v) || api.deps.poolExists?.(v) !== true) {
    return failure(fail('PST_HTTP_UNKNOWN_POOL', `${field}: ${JSON.stringify(v.slice(0, MAX_POOL_NAME_CHARS + 1))} is not a pool of this node's shaping file ([pool.NAME])`));
  }
  return success(v);
}

type PrioritySendAt = Result<{ priority: Priority; notBefore: number | undefined }, HttpResult>;

function parsePrioritySendAt(o: Record<string, unknown>, api: Api, nowMs: number): PrioritySendAt {
  const cfg = api.deps.config;
  let priority: Priority = PRIORITY.normal;
  if (o.priority !== undefined) {
    if (typeof o.priority !== 'string' || !Object.hasOwn(PRIORITY, o.priority)) return bad('priority', 'must be "urgent", "normal" or "bulk"');
    priority = PRIORITY[o.priority as keyof typeof PRIORITY];
  }

  let notBefore: number | undefined;
  if (o.send_at !== undefined) {
    if (typeof o.send_at !== 'string' || CONTROL.test(o.send_at) || !ISO_DATE.test(o.send_at)) return bad('send_at', 'must be an ISO 8601 date-time with a zone, e.g. 2030-01-01T09:00:00Z');
    const t = Date.parse(o.send_at);
    if (!Number.isFinite(t)) return bad('send_at', 'not a valid date');
    if (t - nowMs > cfg.maxQueueLifetimeMs) return bad('send_at', `more than the queue lifetime (${cfg.maxQueueLifetimeMs} ms, POSTERN_MAX_QUEUE_LIFETIME) ahead`);
    notBefore = t;
  }

  return success({ priority, notBefore });
}

export function parseInjection(o: Record<string, unknown>, api: Api, nowMs: number): Injection {
  const cfg = api.deps.config;
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) return bad(k, 'unknown field');

  const checkedFrom = checkAddress('from', o.from, true);
  if (!checkedFrom.ok) return checkedFrom;
  const from = checkedFrom.value;

  if (!Array.isArray(o.to) || o.to.length === 0) return bad('to', 'must be a non-empty array of addresses');
  if (o.to.length > cfg.maxRecipients) return bad('to', `${o.to.length} recipients, at most ${cfg.maxRecipients} (POSTERN_MAX_RECIPIENTS)`);
  const to: string[] = [];
  for (let i = 0; i < o.to.length; i++) {
    const a = checkAddress(`to[${i}]`, o.to[i], false);
    if (!a.ok) return a;
    to.push(a.value);
  }

  const ps = parsePrioritySendAt(o, api, nowMs);
  if (!ps.ok) return ps;
  const { priority, notBefore } = ps.value;

  let raw: Buffer;
  if ((o.raw === undefined) === (o.raw_base64 === undefined)) return bad('raw', 'give exactly one of raw and raw_base64 (or a structured message: subject, text, html, attachments)');
  if (o.raw !== undefined) {
    if (typeof o.raw !== 'string' || o.raw.length === 0) return bad('raw', 'must be a non-empty string');
    raw = Buffer.from(o.raw, 'utf8');
  } else {
    if (typeof o.raw_base64 !== 'string') return bad('raw_base64', 'must be a base64 string');
    const b64 = o.raw_base64.replace(/[ \t\r\n]/g, ''); // MIME-style line breaks carry nothing
    if (b64.length === 0 || b64.length % 4 !== 0 || !BASE64.test(b64)) return bad('raw_base64', 'not valid base64');
    raw = Buffer.from(b64, 'base64');
  }
  raw = toCrlf(raw);
  if (raw.length > cfg.maxMessageBytes) {
    return failure(fail('PST_HTTP_MESSAGE_TOO_LARGE', `message of ${raw.length} bytes, at most ${cfg.maxMessageBytes} (POSTERN_MAX_MESSAGE_BYTES)`));
  }
  const pf = checkPool(api, 'pool', o.pool);
  if (!pf.ok) return pf;
  // The field never leaves the node; an API client is trusted as an authenticated SMTP client is.
  const taken = takePoolHeader(raw, 0);
  raw = taken.body;
  let pool = pf.value;
  if (taken.removed > 0) {
    const h = taken.header;
    if (h.kind === 'repeated') return bad('raw', `X-Postern-Pool appears ${h.count} times; give it once (or use the "pool" field)`);
    if (h.kind === 'too-long' || h.kind === 'bad') return failure(fail('PST_HTTP_UNKNOWN_POOL', 'raw: X-Postern-Pool is not a pool name'));
    if (h.kind === 'one') {
      if (pool !== undefined && pool !== h.value) return bad('pool', `${JSON.stringify(pool)} but the message's X-Postern-Pool says ${JSON.stringify(h.value)}`);
      const hp = checkPool(api, 'raw: X-Postern-Pool', h.value);
      if (!hp.ok) return hp;
      pool = hp.value;
    }
  }

  // eslint-disable-next-line no-control-regex
  const utf8 = [from, ...to].some((a) => /[^\x00-\x7f]/.test(a));
  const env: EnvelopeInput = { sender: from, recipients: to.map((address) => ({ address })), priority };
  if (notBefore !== undefined) env.notBefore = notBefore;
  if (utf8) env.smtputf8 = true;
  if (has8bit(raw)) env.bodyType = '8BITMIME';
  if (pool !== undefined) env.pool = pool;
  return success({ env, raw });
}

/** Fields that make a request structured (when neither raw nor raw_base64 is given). */
const STRUCTURED_MARKERS = ['subject', 'text', 'html', 'attachments', 'headers', 'cc', 'bcc', 'substitutions'];
/** Composed bodies held at once by one request (a campaign's copies together). */
export const MAX_REQUEST_QUEUED_BYTES = 512 * 1024 * 1024;

export function isStructured(o: Record<string, unknown>): boolean {
  return o.raw === undefined && o.raw_base64 === undefined && STRUCTURED_MARKERS.some((k) => o[k] !== undefined);
}

/** One message to queue: its envelope recipients and (for a campaign) its To and variables. */
interface Unit {
  rcpts: string[];
  to?: Mailbox[];
  vars?: Record<string, string>;
}

export type StructuredPlan = Result<{ s: Structured; priority: Priority; notBefore: number | undefined; pool: string | undefined; units: Unit[] }, HttpResult>;

export function planStructured(o: Record<string, unknown>, api: Api, nowMs: number): StructuredPlan {
  const cfg = api.deps.config;
  const p = parseStructured(o, { maxMessageBytes: cfg.maxMessageBytes });
  if (!p.ok) {
    if (p.error.why.includes('POSTERN_MAX_MESSAGE_BYTES')) {
      return failure(fail('PST_HTTP_MESSAGE_TOO_LARGE', `${p.error.field}: ${p.error.why}`));
    }
    return bad(p.error.field, p.error.why);
  }
  const ps = parsePrioritySendAt(o, api, nowMs);
  if (!ps.ok) return ps;
  const pool = checkPool(api, 'pool', o.pool);
  if (!pool.ok) return pool;
  const s = p.value;
  const units: Unit[] = [];
  if (s.substitutions !== null) {
    for (const m of s.to) units.push({ rcpts: [m.address], to: [m], vars: s.substitutions.get(m.address)! });
  } else {
    const seen = new Set<string>();
    const all: string[] = [];
    for (const m of [...s.to, ...s.cc, ...s.bcc]) {
      const k = m.address.toLowerCase();
      if (!seen.has(k)) {
        seen.add(k);
        all.push(m.address);
      }
    }
    for (let i = 0; i < all.length; i += cfg.maxRecipients) units.push({ rcpts: all.slice(i, i + cfg.maxRecipients) });
  }
  const copies = s.substitutions !== null ? units.length : 1;
  if (s.contentBytes * copies > MAX_REQUEST_QUEUED_BYTES) {
    return failure(fail('PST_HTTP_MESSAGE_TOO_LARGE', `${copies} copies of ${s.contentBytes} bytes of content: over ${MAX_REQUEST_QUEUED_BYTES} bytes per request`));
  }
  return success({ s, priority: ps.value.priority, notBefore: ps.value.notBefore, pool: pool.value, units });
}

// eslint-disable-next-line no-control-regex
const isUtf8Address = (a: string): boolean => /[^\x00-\x7f]/.test(a);

/** Suppressed recipients listed in the error (the rest of the request is refused with them). */
const MAX_LISTED_SUPPRESSED = 100;

/** A 422 naming the suppressed recipients among `addresses`, or null when none is. */
export function refuseSuppressed(api: Api, addresses: Iterable<string>): HttpResult | null {
  const found: Array<{ address: string; reason: string | null }> = [];
  let n = 0;
  try {
    for (const a of addresses) {
      const s = api.deps.queue.suppressions.get(a);
      if (s === undefined) continue;
      n++;
      if (found.length < MAX_LISTED_SUPPRESSED) found.push({ address: a, reason: s.reason });
    }
  } catch (err) {
    return queueFailure(err);
  }
  if (n === 0) return null;
  const r = fail('PST_HTTP_RECIPIENT_SUPPRESSED', `${n === 1 ? `${found[0]!.address} is` : `${n} recipients are`} on the suppression list (${found[0]!.reason ?? 'no reason given'}); remove ${n === 1 ? 'it' : 'them'} from the request, or from the list (DELETE /v1/suppressions/:address)`);
  (r.json as { error: Record<string, unknown> }).error.suppressed = found;
  return r;
}

/**
 * A campaign's copies are composed and queued a batch at a time, at most this many bytes
 * composed and held at once, the event loop served between copies: composed all at once, 200
 * copies of 2 MB held the main thread for 68 s and 1.4 GB of memory.
 */
const CAMPAIGN_BATCH_BYTES = 16 * 1024 * 1024;
const yieldTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function injectStructured(c: RouteContext, api: Api, o: Record<string, unknown>): Promise<HttpResult> {
  const plan = planStructured(o, api, Date.now());
  if (!plan.ok) return plan.error;
  const refused = refuseSuppressed(api, plan.value.units.flatMap((u) => u.rcpts));
  if (refused !== null) return refused;
  const { s, units } = plan.value;
  const { queue, config, log } = api.deps;
  const date = new Date();
  const smtputf8 = isUtf8Address(s.from.address) || [...s.to, ...s.cc, ...s.bcc].some((m) => isUtf8Address(m.address));
  const committed: string[] = [];
  let bytes = 0;
  let firstErr: unknown = null;
  let tooLarge: HttpResult | null = null;
  const tooBig = (b: Buffer): HttpResult => fail('PST_HTTP_MESSAGE_TOO_LARGE', `composed message of ${b.length} bytes, at most ${config.maxMessageBytes} (POSTERN_MAX_MESSAGE_BYTES)`);
  // Every enqueue of a batch is issued in one event turn, then awaited together: LMDB commits
  // them in one transaction (one fsync) rather than one per message.
  const enqueueBatch = async (batch: Array<{ unit: Unit; id: string; body: Buffer }>): Promise<void> => {
    const pending = batch.map(({ unit: u, id, body }) => {
      const env: EnvelopeInput = { sender: s.from.address, recipients: u.rcpts.map((address) => ({ address })), priority: plan.value.priority, client: { ip: c.clientIp } };
      if (plan.value.notBefore !== undefined) env.notBefore = plan.value.notBefore;
      if (plan.value.pool !== undefined) env.pool = plan.value.pool;
      if (smtputf8) env.smtputf8 = true;
      if (has8bit(body)) env.bodyType = '8BITMIME';
      const received = httpReceivedHeader({ ip: c.clientIp, hostname: config.hostname, id, recipient: u.rcpts.length === 1 ? u.rcpts[0] : undefined, date });
      return queue.enqueue(env, [received, body], id).then(() => received.length + body.length);
    });
    const settled = await Promise.allSettled(pending);
    settled.forEach((r, i) => {
      if (r.status === 'fulfilled') {
        committed.push(batch[i]!.id);
        bytes += r.value;
      } else {
        firstErr ??= r.reason;
      }
    });
  };
  try {
    if (s.substitutions === null) {
      // One message split over envelopes: one body (and one Message-ID) for all of them.
      const ids = units.map(() => queue.reserveId());
      const one = toCrlf(await composeMessage(s, { messageId: `<${ids[0]}@${config.hostname}>`, date }));
      if (one.length > config.maxMessageBytes) return tooBig(one);
      await enqueueBatch(units.map((unit, i) => ({ unit, id: ids[i]!, body: one })));
    } else {
      let batch: Array<{ unit: Unit; id: string; body: Buffer }> = [];
      let held = 0;
      for (const u of units) {
        const id = queue.reserveId();
        const body = toCrlf(await composeMessage(s, { messageId: `<${id}@${config.hostname}>`, date, to: u.to!, vars: u.vars! }));
        if (body.length > config.maxMessageBytes) {
          tooLarge = tooBig(body);
          break;
        }
        batch.push({ unit: u, id, body });
        held += body.length;
        if (held >= CAMPAIGN_BATCH_BYTES) {
          await enqueueBatch(batch);
          batch = [];
          held = 0;
          if (firstErr !== null) break;
        }
        await yieldTurn();
      }
      if (firstErr === null && batch.length > 0) await enqueueBatch(batch);
    }
  } catch (err) {
    if (committed.length === 0) return queueFailure(err); // a closed queue is a 503; anything else is rethrown (500)
    firstErr ??= err;
  }
  api.stats.messagesInjected += committed.length;
  api.stats.bytesInjected += bytes;
  if (committed.length > 0) api.deps.onQueued?.();
  if (api.deps.onEvent) {
    const time = new Date().toISOString();
    for (const cid of committed) api.deps.onEvent({ type: 'received', time, id: cid, source: 'http', sender: s.from.address });
  }
  if (firstErr !== null || tooLarge !== null) {
    api.stats.messagesRejected += units.length - committed.length;
    let r: HttpResult;
    if (firstErr !== null) {
      log.error({ err: firstErr, committed: committed.length, of: units.length }, 'injection: queue write failed: 503');
      r = queueFailure(firstErr);
    } else {
      r = tooLarge!;
    }
    // Those already durable are named, so a retry can leave them out.
    if (committed.length > 0) r.json = { ...(r.json as object), ids: committed, count: committed.length };
    return r;
  }
  const ids = committed;
  log.info({ ids: ids.length, first: ids[0], from: s.from.address, rcpts: units.reduce((n, u) => n + u.rcpts.length, 0), bytes, campaign: s.substitutions !== null, by: c.clientIp }, 'queued over HTTP (structured)');
  if (ids.length === 1) return { status: 202, json: { id: ids[0], ids, count: 1 }, headers: { location: `/v1/queue/messages/${ids[0]}` } };
  return { status: 202, json: { ids, count: ids.length } };
}

export const injectMessageV1: Route<Api> = {
  method: 'POST',
  path: '/v1/messages',
  auth: true,
  handler: async (c, api) => {
    const json = await readJsonObject(c);
    if (!json.ok) return json.error;
    if (isStructured(json.value)) return injectStructured(c, api, json.value);
    const parsed = parseInjection(json.value, api, Date.now());
    if (!parsed.ok) return parsed.error;
    const p = parsed.value;
    const refused = refuseSuppressed(api, p.env.recipients.map((r) => r.address));
    if (refused !== null) return refused;
    const { queue, config, log } = api.deps;
    let id: string;
    try {
      id = queue.reserveId();
      const received = httpReceivedHeader({
        ip: c.clientIp,
        hostname: config.hostname,
        id,
        recipient: p.env.recipients.length === 1 ? p.env.recipients[0]!.address : undefined,
      });
      p.env.client = { ip: c.clientIp };
      await queue.enqueue(p.env, [received, p.raw], id);
    } catch (err) {
      api.stats.messagesRejected++;
      log.error({ err }, 'injection: queue write failed: 503');
      return queueFailure(err);
    }
    const size = p.raw.length;
    api.stats.messagesInjected++;
    api.stats.bytesInjected += size;
    api.deps.onQueued?.();
    api.deps.onEvent?.({ type: 'received', time: new Date().toISOString(), id, source: 'http', sender: p.env.sender, recipients: p.env.recipients.length, size });
    log.info({ id, from: p.env.sender, rcpts: p.env.recipients.length, size, priority: p.env.priority, ...(p.env.pool !== undefined ? { pool: p.env.pool } : {}), by: c.clientIp }, 'queued over HTTP');
    return { status: 202, json: { id, ids: [id], count: 1 }, headers: { location: `/v1/queue/messages/${id}` } };
  },
};
