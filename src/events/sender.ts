// Event webhooks: POSTs batches of queued events ({"events":[…]}, JSON) to POSTERN_EVENTS_URL
// with undici, removing them from the durable log only after a 2xx. A slow or dead receiver
// only makes the log grow: appends never wait for it, so delivery is never slowed, and
// failed batches are retried with backoff (1 s doubling to 5 min). It authenticates with
// POSTERN_EVENTS_TOKEN (Bearer, RFC 6750) or with the URL's user:password (Basic, RFC 7617).
// The status decides; the response body is read only to keep the connection, at most
// MAX_RESPONSE_BYTES, and the whole exchange ends within timeoutMs (a receiver is not trusted
// to end its answer).
import { Pool } from 'undici';
import { ConfigError } from '../config/load.js';
import { redactUrl } from '../lib/redact-url.js';
import type { EventLog, MailEvent } from '../queue/events.js';
import type { Logger } from '../log/logger.js';

/** The response body drained at most (as for webhook delivery); past it the socket is dropped. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface EventSenderOptions {
  url: string;
  log: Logger;
  batchSize?: number;
  /** Wait this long for more events before sending a partial batch (default 1 s). */
  lingerMs?: number;
  /** Headers wait, gap between body chunks, and the whole exchange (default 10 s). */
  timeoutMs?: number;
  token?: string;
}

/** A %-escape that does not decode is taken as written. */
function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export class EventSender {
  readonly #events: EventLog;
  readonly #o: Required<Omit<EventSenderOptions, 'token'>> & { token?: string };
  readonly #pool: Pool;
  readonly #path: string;
  /** The Authorization header value, or null. */
  readonly #authorization: string | null;
  #timer: NodeJS.Timeout | null = null;
  #running = false;
  #busy: Promise<void> | null = null;
  #backoffMs = 0;
  /** Nudged while a flush was running. */
  #again = false;
  sent = 0;
  failures = 0;

  constructor(events: EventLog, o: EventSenderOptions) {
    this.#events = events;
    this.#o = { batchSize: 100, lingerMs: 1000, timeoutMs: 10_000, ...o };
    const u = new URL(o.url);
    this.#path = u.pathname + u.search;
    const userinfo = u.username !== '' || u.password !== '';
    if (userinfo && o.token) {
      throw new ConfigError([`POSTERN_EVENTS_URL=${JSON.stringify(redactUrl(o.url))} has credentials and POSTERN_EVENTS_TOKEN is set: use one of them`]);
    }
    if (o.token) this.#authorization = `Bearer ${o.token}`;
    else if (userinfo) this.#authorization = `Basic ${Buffer.from(`${decode(u.username)}:${decode(u.password)}`, 'utf8').toString('base64')}`;
    else this.#authorization = null;
    this.#pool = new Pool(u.origin, { connections: 2, headersTimeout: this.#o.timeoutMs, bodyTimeout: this.#o.timeoutMs, maxResponseSize: MAX_RESPONSE_BYTES });
  }

  start(): void {
    this.#running = true;
    this.#schedule(0);
  }

  /**
   * An event was appended: send soon (batched by lingerMs) unless backing off. One that comes
   * while a batch is being posted is remembered, or it would wait for the next event.
   */
  nudge(): void {
    if (!this.#running || this.#timer !== null || this.#backoffMs !== 0) return;
    if (this.#busy !== null) this.#again = true;
    else this.#schedule(this.#o.lingerMs);
  }

  #schedule(ms: number): void {
    if (!this.#running) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#again = false;
      this.#busy = this.#flush().finally(() => {
        this.#busy = null;
        if (this.#again) this.nudge();
      });
    }, ms);
    this.#timer.unref();
  }

  async #flush(): Promise<void> {
    // Events appended just before are in LMDB's open write batch: peek sees them once it commits.
    await this.#events.committed();
    for (;;) {
      if (!this.#running) return;
      const batch = this.#events.peek(this.#o.batchSize);
      if (batch.length === 0) return;
      const ok = await this.#post(batch.map((b) => b.event));
      if (!ok) {
        this.failures++;
        this.#backoffMs = Math.min(300_000, this.#backoffMs === 0 ? 1000 : this.#backoffMs * 2);
        this.#o.log.warn({ pending: this.#events.pending, retryInMs: this.#backoffMs }, 'event webhook failed; events kept');
        this.#schedule(this.#backoffMs);
        return;
      }
      this.#backoffMs = 0;
      this.sent += batch.length;
      await this.#events.ack(batch.map((b) => b.key));
      if (batch.length < this.#o.batchSize) return;
    }
  }

  async #post(events: MailEvent[]): Promise<boolean> {
    // Headers and body timeouts bound each wait; this bounds the whole (a trickling body).
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.#o.timeoutMs);
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (this.#authorization !== null) headers.authorization = this.#authorization;
      const r = await this.#pool.request({ method: 'POST', path: this.#path, headers, body: JSON.stringify({ events }), signal: deadline.signal });
      // The status is the answer; a body cut short (too long, too slow) only costs the connection.
      await r.body.dump({ limit: MAX_RESPONSE_BYTES, signal: deadline.signal }).catch(() => {});
      return r.statusCode >= 200 && r.statusCode < 300;
    } catch (err) {
      this.#o.log.debug({ err: (err as Error).message }, 'event webhook error');
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#busy;
    await this.#pool.close();
  }
}
