// The one connection of a node to the Redis its cluster shares (POSTERN_REDIS_URL): every call
// bounded by a deadline, reconnection in the background, and whether Redis is up or down as
// the callers should see it. Callers never wait on a Redis that is down: a call then fails at
// once and they decide on their own (docs/scale-out.md "Shared state in Redis").
//
//   unknown ──ready──▶ up ──(connection lost, or FAILURES_DOWN calls failed in a row)──▶ down
//      └──(error, or no ready within the connect timeout)──▶ down ──(ready, or a probe answers)──▶ up
import { Redis } from 'ioredis';
import type { Logger } from '../log/logger.js';
import { redactUrl } from '../lib/redact-url.js';
import { failure, success, type Result } from '../lib/result.js';
import { PosternError } from '../errors.js';

/** Calls failed (deadline passed, or an error) in a row that mark a connected Redis down: one slow answer is not an outage. */
export const FAILURES_DOWN = 3;
/** While down but connected (too slow), a PING this often says when it answers in time again. */
const PROBE_MS = 1000;

export interface RedisLinkOptions {
  url: string;
  /** Deadline of each call, ms. */
  timeoutMs: number;
  log?: Logger;
  /** Told each change between up and down (not the first connection). */
  onChange?: (up: boolean) => void;
}

export type RedisState = 'unknown' | 'up' | 'down';

export class RedisLink {
  readonly #o: RedisLinkOptions;
  readonly #redis: Redis;
  readonly #shown: string;
  #state: RedisState = 'unknown';
  #failures = 0;
  #connected = false;
  #probe: NodeJS.Timeout | null = null;
  #startTimer: NodeJS.Timeout | null = null;
  #closed = false;
  /** Calls that failed (deadline or error), for tests and /metrics. */
  failures = 0;

  constructor(o: RedisLinkOptions) {
    this.#o = o;
    this.#shown = redactUrl(o.url);
    this.#redis = new Redis(o.url, {
      lazyConnect: true,
      // A command while disconnected fails at once instead of queueing behind the reconnection.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: o.timeoutMs,
      connectTimeout: Math.max(1000, o.timeoutMs * 10),
      autoResubscribe: false,
      // Reconnect forever in the background, at most every 2 s.
      retryStrategy: (times) => Math.min(100 * times, 2000),
    });
    // Without a listener ioredis prints every error; they say nothing the state change does not.
    this.#redis.on('error', (err: Error) => {
      if (this.#state !== 'down') this.#o.log?.warn({ redis: this.#shown, err: err.message }, 'redis error');
      if (!this.#connected) this.#down('connection failed');
    });
    this.#redis.on('ready', () => {
      this.#connected = true;
      this.#failures = 0;
      this.#up();
    });
    this.#redis.on('close', () => {
      if (this.#connected) {
        this.#connected = false;
        this.#down('connection lost');
      }
    });
  }

  /** Connect in the background; nothing waits for it. */
  start(): void {
    this.#redis.connect().catch(() => {}); // the 'error' listener reports it; retryStrategy goes on
    this.#startTimer = setTimeout(() => {
      if (this.#state === 'unknown') this.#down('no connection within the connect timeout');
    }, Math.max(1000, this.#o.timeoutMs * 10)).unref();
  }

  get state(): RedisState {
    return this.#state;
  }

  get up(): boolean {
    return this.#state === 'up';
  }

  /**
   * `fn` against Redis within the deadline; a failure (Redis down, deadline, error) is a value,
   * never a wait: when Redis is not up the call fails without being sent.
   */
  async call<T>(fn: (r: Redis) => Promise<T>): Promise<Result<T, PosternError>> {
    if (!this.up) return failure(new PosternError('PST_ERR_REDIS_UNAVAILABLE', `redis is ${this.#state}`));
    let timer: NodeJS.Timeout | undefined;
    try {
      // commandTimeout bounds each command; this bounds the whole call (a pipeline, a script load).
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${this.#o.timeoutMs} ms`)), this.#o.timeoutMs);
      });
      const v = await Promise.race([fn(this.#redis), deadline]);
      this.#failures = 0;
      return success(v);
    } catch (err) {
      this.failures++;
      if (++this.#failures >= FAILURES_DOWN) this.#down(`${FAILURES_DOWN} calls failed in a row`);
      return failure(new PosternError('PST_ERR_REDIS_UNAVAILABLE', (err as Error).message, { cause: err }));
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#probe) clearInterval(this.#probe);
    if (this.#startTimer) clearTimeout(this.#startTimer);
    this.#redis.disconnect(false);
  }

  #up(): void {
    if (this.#closed || this.#state === 'up') return;
    const was = this.#state;
    this.#state = 'up';
    if (this.#probe) clearInterval(this.#probe);
    this.#probe = null;
    this.#o.log?.info({ redis: this.#shown }, was === 'unknown' ? 'redis connected: limits and suppressions are shared' : 'redis is back: limits and suppressions are shared again');
    if (was === 'down') this.#o.onChange?.(true);
  }

  #down(why: string): void {
    if (this.#closed || this.#state === 'down') return;
    this.#state = 'down';
    this.#o.log?.error({ redis: this.#shown, why }, 'redis is down: each node keeps delivering on its share of the limits');
    this.#o.onChange?.(false);
    // Connected but too slow: only a probe can tell it answers again ('ready' will not come).
    this.#probe ??= setInterval(() => {
      if (!this.#connected) return;
      let timer: NodeJS.Timeout | undefined;
      void Promise.race([this.#redis.ping(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), this.#o.timeoutMs)))])
        .then(() => {
          this.#failures = 0;
          this.#up();
        }, () => {})
        .finally(() => clearTimeout(timer));
    }, PROBE_MS).unref();
  }
}
