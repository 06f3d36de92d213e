// The connections to one destination (undici pool-base.js in spirit): at most maxConnections
// open, idle ones reused before any new one is opened, waiters served FIFO. Opening tries the
// destination's hosts in order (RFC 5321 §5.1 MX failover) and moves on after a connect error,
// timeout, or a refused greeting/EHLO/STARTTLS.
//
//   acquire() ──► idle (LIFO) ──► busy ──► release(conn, true) ──► waiter (FIFO) or idle
//        │                                        │ false / worn out / dead
//        └─ below cap: open (hosts in order)      └─► QUIT/destroy, slot freed ──► next waiter
//
// The hosts follow DNS: setHosts() takes each new checked answer, so a new connection never
// goes to an address the MX host no longer has (that address may belong to someone else now).
import type { HostPort } from './types.js';
import type { ReplyRecord } from '../queue/types.js';
import type { OpenResult, SmtpConnection } from './smtp-client.js';
import { failure, success } from '../lib/result.js';
import { invalidArgument } from '../lib/invalid-argument.js';

export interface DestinationPoolOptions {
  key: string;
  hosts: HostPort[];
  maxConnections: number;
  maxMessagesPerConnection: number;
  idleTimeoutMs: number;
  /** Open one connection to one host (SmtpConnection.open with the destination's options). */
  connect(host: HostPort): Promise<OpenResult>;
  /**
   * The most time one connection may spend going through the hosts: past it no further host is
   * tried (the attempt fails with the last host's reply and the message is retried later).
   * Each open is bounded, but 10 MX hosts x 4 addresses of servers answering each step just
   * in time would hold a delivery slot for hours. Default: no bound.
   */
  openBudgetMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

export interface PoolCounts {
  /** Connections open or opening. */
  open: number;
  opening: number;
  idle: number;
  busy: number;
  waiting: number;
  /** Connections opened over the pool's life. */
  opened: number;
}

type Waiter = (r: OpenResult) => void;

interface Idle {
  conn: SmtpConnection;
  timer: NodeJS.Timeout;
}

export class DestinationPool {
  readonly key: string;
  readonly #o: DestinationPoolOptions;
  #idle: Idle[] = [];
  #busy = new Set<SmtpConnection>();
  #opening = 0;
  #opened = 0;
  #waiters: Waiter[] = [];
  #closed = false;
  #hosts: HostPort[];
  /** Bumped when the host set changes; a connection of an older generation is not reused. */
  #generation = 0;
  readonly #bornIn = new WeakMap<SmtpConnection, number>();

  constructor(opts: DestinationPoolOptions) {
    if (opts.hosts.length === 0) throw invalidArgument(`destination ${opts.key} has no hosts`, 'type');
    if (!(opts.maxConnections >= 1)) throw invalidArgument(`maxConnections must be >= 1 (got ${opts.maxConnections})`, 'type');
    this.key = opts.key;
    this.#o = opts;
    this.#hosts = opts.hosts;
  }

  /**
   * The hosts (with their checked addresses) of the latest routing answer. The same set in
   * another order (equal MX preferences are shuffled) only changes the order tried; a changed
   * set closes the idle connections, and busy ones are closed when released.
   */
  setHosts(hosts: HostPort[]): void {
    if (hosts.length === 0) return;
    const same = hosts.length === this.#hosts.length && hostSet(hosts) === hostSet(this.#hosts);
    this.#hosts = hosts;
    if (same) return;
    this.#generation++;
    for (const { conn, timer } of this.#idle.splice(0)) {
      clearTimeout(timer);
      conn.onClose = null;
      void conn.quit();
    }
  }

  /** Nothing open, opening or waiting: the pool can be dropped. */
  get unused(): boolean {
    return this.#idle.length === 0 && this.#busy.size === 0 && this.#opening === 0 && this.#waiters.length === 0;
  }

  get counts(): PoolCounts {
    return {
      open: this.#idle.length + this.#busy.size + this.#opening,
      opening: this.#opening,
      idle: this.#idle.length,
      busy: this.#busy.size,
      waiting: this.#waiters.length,
      opened: this.#opened,
    };
  }

  /** An idle connection if any, else a new one below the cap, else the next freed one (FIFO). */
  acquire(): Promise<OpenResult> {
    if (this.#closed) return Promise.resolve(closedResult(this.key));
    return new Promise<OpenResult>((resolve) => {
      this.#waiters.push(resolve);
      this.#pump();
    });
  }

  /** Hand a connection back; reusable = the transaction ended in step with the peer. */
  release(conn: SmtpConnection, reusable: boolean): void {
    if (!this.#busy.delete(conn)) return;
    if (reusable && !this.#closed && conn.usable && conn.messages < this.#o.maxMessagesPerConnection && this.#bornIn.get(conn) === this.#generation) {
      const w = this.#waiters.shift();
      if (w) {
        this.#busy.add(conn);
        w(success(conn));
        return;
      }
      this.#park(conn);
      return;
    }
    conn.onClose = null;
    void conn.quit();
    this.#pump();
  }

  /** QUIT idle connections; busy ones close when released; waiters get a transient failure. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w(closedResult(this.key));
    const idle = this.#idle.splice(0);
    await Promise.all(
      idle.map(({ conn, timer }) => {
        clearTimeout(timer);
        conn.onClose = null;
        return conn.quit();
      }),
    );
  }

  #park(conn: SmtpConnection): void {
    const entry: Idle = {
      conn,
      timer: setTimeout(() => {
        this.#drop(entry);
        void conn.quit();
      }, this.#o.idleTimeoutMs),
    };
    entry.timer.unref();
    // The peer may close an idle connection (its own idle timeout): forget it then.
    conn.onClose = () => {
      this.#drop(entry);
      this.#pump();
    };
    this.#idle.push(entry);
  }

  #drop(entry: Idle): void {
    clearTimeout(entry.timer);
    const i = this.#idle.indexOf(entry);
    if (i >= 0) this.#idle.splice(i, 1);
  }

  #pump(): void {
    while (this.#waiters.length > 0) {
      const idle = this.#idle.pop(); // most recently used: lets the others time out
      if (idle) {
        clearTimeout(idle.timer);
        idle.conn.onClose = null;
        if (!idle.conn.usable) continue;
        this.#busy.add(idle.conn);
        this.#waiters.shift()!(success(idle.conn));
        continue;
      }
      if (this.#busy.size + this.#opening >= this.#o.maxConnections) return;
      const w = this.#waiters.shift()!;
      this.#opening++;
      void this.#openAny().then((r) => {
        this.#opening--;
        if (r.ok) {
          this.#opened++;
          if (this.#closed) {
            void r.value.quit();
            w(closedResult(this.key));
            return;
          }
          this.#busy.add(r.value);
        }
        w(r);
        // A failed open: when nothing else is open to this destination, the waiters would only
        // fail the same way one by one (each after the full timeouts), so they share this
        // failure. Otherwise they wait for a busy connection to come back.
        if (!r.ok && this.#busy.size === 0 && this.#opening === 0 && this.#idle.length === 0) {
          for (const other of this.#waiters.splice(0)) other(r);
        }
      });
    }
  }

  /** Hosts in order; the last failure is the one reported. */
  async #openAny(): Promise<OpenResult> {
    let last: OpenResult | null = null;
    const generation = this.#generation;
    const now = this.#o.now ?? Date.now;
    const until = now() + (this.#o.openBudgetMs ?? Number.POSITIVE_INFINITY);
    for (const h of this.#hosts) {
      if (last !== null && now() >= until) {
        last.error.text = `${last.error.text} (no further host tried: ${this.#o.openBudgetMs} ms spent opening)`;
        break;
      }
      last = await this.#o.connect(h);
      if (last.ok) {
        this.#bornIn.set(last.value, generation);
        return last;
      }
    }
    return last!;
  }
}

function hostSet(hosts: readonly HostPort[]): string {
  return hosts.map((h) => `${h.host} ${h.port} ${h.address ?? ''}`).sort().join(',');
}

function closedResult(key: string): OpenResult {
  const reply: ReplyRecord = { text: `destination pool ${key} is closed`, command: 'CONNECT', transient: true, destination: key, at: Date.now() };
  return failure(reply);
}
