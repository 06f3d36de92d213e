// Delivery by HTTP POST (RFC 9110 §9.3.3) of the raw message as message/rfc822 (RFC 5322 /
// RFC 2046 §5.2.1), the envelope carried in x-postern-* request headers. One undici Pool per
// origin keeps connections alive across messages. The HTTP status decides the SMTP outcome:
// 2xx delivered, 4xx permanent (5.0.0) except 408/429, 5xx/timeouts/network errors transient.
// A receiver is not trusted to end its answer: at most MAX_RESPONSE_BYTES of body is read, and
// the whole exchange has a deadline (responseTimeoutMs).
import assert from 'node:assert/strict';
import { Pool } from 'undici';
import type { DeliveryRequest, Destination, RecipientResult, Transport } from './types.js';
import { notDelivered, replyRecord } from './types.js';

/*
 * Request:
 *   POST <url path+query>
 *   content-type: message/rfc822
 *   x-postern-message-id: <queue id>
 *   x-postern-sender: <enc(sender)>          ('' for the null reverse-path <>)
 *   x-postern-recipients: <enc(r1)>,<enc(r2)>
 * enc() is encodeURIComponent with '@' left readable: every byte outside [A-Za-z0-9-_.!~*'()@]
 * (CR, LF, ',', ';', '%', non-ASCII ...) becomes %XX, so a value can neither end the header
 * nor split the list; decodeURIComponent reverses it.
 *
 * Semantics are at-least-once: a POST is not retried by undici, but if the receiver took the
 * message and the connection died before its answer, the queue retries later. Receivers
 * should deduplicate on x-postern-message-id + recipients.
 *
 * Mapping deviations, on purpose: 408 Request Timeout and 429 Too Many Requests are 4xx but
 * say "try later", so they are transient; 1xx/3xx (redirects are not followed: a webhook URL
 * is configuration, and following one would re-POST the body elsewhere) are transient too, so
 * a misconfigured URL keeps mail queued instead of bouncing it.
 */

export interface WebhookTransportOptions {
  /** Connections per origin (default 4). */
  connections?: number;
  /** Time to wait for the response headers (default 30_000). */
  headersTimeoutMs?: number;
  /** Time allowed between response body chunks (default 30_000). */
  bodyTimeoutMs?: number;
  /** TCP/TLS connect timeout (default 10_000). */
  connectTimeoutMs?: number;
  /** Idle keep-alive time before a pooled socket is closed (default 4_000, undici's). */
  keepAliveTimeoutMs?: number;
  /** The whole exchange, request sent to response body ended (default 60_000). */
  responseTimeoutMs?: number;
}

/** At most this much of the response body is quoted in the reply text. */
const MAX_QUOTED_BYTES = 200;
/**
 * The response body read at most: a webhook answers with a status and perhaps a line of text,
 * so 64 KiB is plenty to drain and keep the connection. Past it, undici (maxResponseSize)
 * destroys the socket: the rest is never read, the connection not reused, and the status
 * stands.
 */
export const MAX_RESPONSE_BYTES = 64 * 1024;

export function encodeEnvelopeValue(s: string): string {
  return encodeURIComponent(s).replace(/%40/g, '@');
}

/** Printable ASCII only, for quoting a remote's text inside a reply record. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]+/g, ' ').trim();
}

export class WebhookTransport implements Transport {
  readonly #opts: Required<WebhookTransportOptions>;
  readonly #pools = new Map<string, Pool>();
  #closed = false;

  constructor(opts: WebhookTransportOptions = {}) {
    this.#opts = {
      connections: opts.connections ?? 4,
      headersTimeoutMs: opts.headersTimeoutMs ?? 30_000,
      bodyTimeoutMs: opts.bodyTimeoutMs ?? 30_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 4_000,
      responseTimeoutMs: opts.responseTimeoutMs ?? 60_000,
    };
  }

  /** Number of origins with a pool (for tests and metrics). */
  get poolCount(): number {
    return this.#pools.size;
  }

  #pool(origin: string): Pool {
    let p = this.#pools.get(origin);
    if (p === undefined) {
      p = new Pool(origin, {
        connections: this.#opts.connections,
        headersTimeout: this.#opts.headersTimeoutMs,
        bodyTimeout: this.#opts.bodyTimeoutMs,
        connectTimeout: this.#opts.connectTimeoutMs,
        keepAliveTimeout: this.#opts.keepAliveTimeoutMs,
        maxResponseSize: MAX_RESPONSE_BYTES,
      });
      this.#pools.set(origin, p);
    }
    return p;
  }

  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    assert.equal(dest.kind, 'webhook', 'WebhookTransport got a non-webhook destination');
    const urlText = (dest as Extract<Destination, { kind: 'webhook' }>).url;
    const all = (code: number, enhanced: string, text: string, where: string): RecipientResult[] => {
      const reply = replyRecord(code, enhanced, text, 'POST', where);
      const ok = code >= 200 && code < 300;
      return req.recipients.map((r) => (ok ? { kind: 'delivered', address: r.address, reply } : notDelivered(r.address, reply)));
    };

    let url: URL;
    try {
      url = new URL(urlText);
    } catch {
      url = new URL('invalid:');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      // Configuration, not the message, is wrong: keep the mail queued (4.3.5) until fixed.
      return all(451, '4.3.5', 'webhook URL is not a valid http(s) URL', dest.key);
    }
    const origin = url.origin;
    if (this.#closed) return all(451, '4.3.0', 'webhook transport is closed', origin);

    const headers: Record<string, string> = {
      'content-type': 'message/rfc822',
      'x-postern-message-id': encodeEnvelopeValue(req.message.id),
      'x-postern-sender': encodeEnvelopeValue(req.message.sender),
      'x-postern-recipients': req.recipients.map((r) => encodeEnvelopeValue(r.address)).join(','),
    };
    if (url.username !== '' || url.password !== '') {
      const cred = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
      headers.authorization = `Basic ${Buffer.from(cred, 'utf8').toString('base64')}`;
    }

    let status = 0;
    let quoted = '';
    let cut = false;
    // The headers and body timeouts bound each wait; this bounds the whole: a body that
    // trickles in a byte at a time never trips them.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.#opts.responseTimeoutMs);
    try {
      const res = await this.#pool(origin).request({
        method: 'POST',
        path: url.pathname + url.search,
        headers,
        body: req.body,
        headersTimeout: this.#opts.headersTimeoutMs,
        bodyTimeout: this.#opts.bodyTimeoutMs,
        signal: deadline.signal,
      });
      status = res.statusCode;
      // Read the body (quoting its start): an unread body holds the connection out of the pool.
      const chunks: Buffer[] = [];
      let n = 0;
      try {
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          if (n < MAX_QUOTED_BYTES) chunks.push(chunk);
          n += chunk.length;
        }
      } catch (err) {
        if ((err as { code?: unknown })?.code !== 'UND_ERR_RES_EXCEEDED_MAX_SIZE') throw err;
        cut = true;
      }
      quoted = printable(Buffer.concat(chunks).subarray(0, MAX_QUOTED_BYTES).toString('utf8'));
    } catch (err) {
      if (deadline.signal.aborted) return all(451, '4.0.0', `webhook request failed: no complete response within ${this.#opts.responseTimeoutMs} ms`, origin);
      const e = err as { code?: unknown; message?: unknown };
      const code = typeof e?.code === 'string' ? e.code : 'ERROR';
      return all(451, '4.0.0', `webhook request failed: ${code} ${printable(String(e?.message ?? ''))}`.trim(), origin);
    } finally {
      clearTimeout(timer);
    }

    const text = `webhook answered HTTP ${status}${quoted ? `: ${quoted}` : ''}${cut ? ` (body over ${MAX_RESPONSE_BYTES} bytes not read)` : ''}`;
    if (status >= 200 && status < 300) return all(250, '2.0.0', text, origin);
    if (status >= 400 && status < 500 && status !== 408 && status !== 429) return all(550, '5.0.0', text, origin);
    return all(451, '4.0.0', text, origin);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.close()));
  }
}
