// POST /v1/messages: inject one raw RFC 5322 message with its envelope.
//   { "from": "a@b", "to": ["c@d"], "raw": "…" | "raw_base64": "…",
//     "priority": "urgent|normal|bulk", "send_at": "2030-01-01T00:00:00Z" }
// Every field is checked before anything is stored, and a control character (CR, LF, NUL, …)
// in any envelope field is refused, so no field can inject a header or an SMTP command. The
// 202 is sent only after the queue's commit is on disk (as the SMTP path's 250).
import { isMailbox } from '../../protocol/address.js';
import { PRIORITY, type EnvelopeInput, type Priority } from '../../queue/store.js';
import type { Api } from '../api.js';
import { readJsonObject } from '../body.js';
import { queueFailure } from '../queue-errors.js';
import { has8bit, httpReceivedHeader, toCrlf } from '../raw-message.js';
import { fail, type HttpResult } from '../respond.js';
import type { Route } from '../router.js';

const FIELDS = new Set(['from', 'to', 'raw', 'raw_base64', 'priority', 'send_at']);
// C0, DEL, C1, and the Unicode line/paragraph separators.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f\u2028\u2029]/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its angle brackets. */
const MAX_ADDRESS_BYTES = 254;

type Parsed =
  | { ok: true; env: EnvelopeInput; raw: Buffer }
  | { ok: false; error: HttpResult };

function bad(field: string, why: string): Parsed {
  return { ok: false, error: fail('PST_HTTP_BAD_FIELD', `${field}: ${why}`) };
}

function checkAddress(field: string, v: unknown, allowNull: boolean): string | Parsed {
  if (typeof v !== 'string') return bad(field, 'must be a string');
  if (CONTROL.test(v)) return bad(field, 'control characters (CR, LF, NUL, …) are not allowed');
  if (v === '' && allowNull) return v;
  if (Buffer.byteLength(v) > MAX_ADDRESS_BYTES || !isMailbox(v)) return bad(field, `${JSON.stringify(v)} is not a mailbox (local@domain)`);
  return v;
}

export function parseInjection(o: Record<string, unknown>, api: Api, nowMs: number): Parsed {
  const cfg = api.deps.config;
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) return bad(k, 'unknown field');

  const from = checkAddress('from', o.from, true);
  if (typeof from !== 'string') return from;

  if (!Array.isArray(o.to) || o.to.length === 0) return bad('to', 'must be a non-empty array of addresses');
  if (o.to.length > cfg.maxRecipients) return bad('to', `${o.to.length} recipients, at most ${cfg.maxRecipients} (POSTERN_MAX_RECIPIENTS)`);
  const to: string[] = [];
  for (let i = 0; i < o.to.length; i++) {
    const a = checkAddress(`to[${i}]`, o.to[i], false);
    if (typeof a !== 'string') return a;
    to.push(a);
  }

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

  let raw: Buffer;
  if ((o.raw === undefined) === (o.raw_base64 === undefined)) return bad('raw', 'give exactly one of raw and raw_base64');
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
    return { ok: false, error: fail('PST_HTTP_MESSAGE_TOO_LARGE', `message of ${raw.length} bytes, at most ${cfg.maxMessageBytes} (POSTERN_MAX_MESSAGE_BYTES)`) };
  }

  // eslint-disable-next-line no-control-regex
  const utf8 = [from, ...to].some((a) => /[^\x00-\x7f]/.test(a));
  const env: EnvelopeInput = { sender: from, recipients: to.map((address) => ({ address })), priority };
  if (notBefore !== undefined) env.notBefore = notBefore;
  if (utf8) env.smtputf8 = true;
  if (has8bit(raw)) env.bodyType = '8BITMIME';
  return { ok: true, env, raw };
}

export const injectMessageV1: Route<Api> = {
  method: 'POST',
  path: '/v1/messages',
  auth: true,
  handler: async (c, api) => {
    const json = await readJsonObject(c);
    if (!json.ok) return json.error;
    const p = parseInjection(json.value, api, Date.now());
    if (!p.ok) return p.error;
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
    log.info({ id, from: p.env.sender, rcpts: p.env.recipients.length, size, priority: p.env.priority, by: c.clientIp }, 'queued over HTTP');
    return { status: 202, json: { id }, headers: { location: `/v1/queue/messages/${id}` } };
  },
};
