// A connection from a load balancer in POSTERN_PROXY_TRUSTED until its PROXY protocol header
// (protocol/proxy-header.ts) is complete: nothing is sent to it before (the spec forbids
// processing the connection first, and SMTP's server speaks first), and a header that is
// invalid, cut short by the proxy, or not complete within POSTERN_PROXY_TIMEOUT_MS closes the
// connection unanswered, with the reason logged. Exists only on proxied connections and only
// until the header is read; then the server makes the Session and hands it the bytes that
// came after the header in the same chunk (a client's first command, relayed at once).
import type { Socket } from 'node:net';
import { ProxyHeaderReader, type ProxyHeader } from '../protocol/proxy-header.js';
import type { DeadlineQueue } from '../lib/deadline-queue.js';
import type { Logger } from '../log/logger.js';

export interface ProxyHandshakeHooks {
  readonly deadlines: DeadlineQueue<ProxyHandshake>;
  readonly log: Logger;
  /** The header is complete and valid: `rest` is what followed it in its chunk (null: nothing). */
  done(h: ProxyHandshake, header: ProxyHeader, rest: Buffer | null): void;
  /** The connection is gone without a header (closed by us or by the proxy). */
  failed(h: ProxyHandshake): void;
}

export class ProxyHandshake {
  /** Owned by the hooks' DeadlineQueue. */
  deadlineSlot = -1;
  readonly socket: Socket;
  /** It came to the implicit-TLS port: the client's TLS handshake follows the header. */
  readonly implicitTls: boolean;
  /** The load balancer's address (the socket's peer). */
  readonly peer: string;
  readonly #hooks: ProxyHandshakeHooks;
  readonly #reader = new ProxyHeaderReader();
  readonly #timeoutMs: number;
  #over = false;

  constructor(socket: Socket, implicitTls: boolean, peer: string, timeoutMs: number, hooks: ProxyHandshakeHooks) {
    this.socket = socket;
    this.implicitTls = implicitTls;
    this.peer = peer;
    this.#hooks = hooks;
    this.#timeoutMs = timeoutMs;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    hooks.deadlines.set(this, timeoutMs);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#over) return;
    const r = this.#reader.feed(chunk);
    if (r.kind === 'partial') return;
    if (r.kind === 'invalid') return this.#refuse(r.reason);
    this.#stop();
    this.#hooks.done(this, r.header, r.end < chunk.length ? chunk.subarray(r.end) : null);
  };

  readonly #onEnd = (): void => this.#refuse('the proxy closed its side before a complete PROXY header');

  readonly #onError = (err: Error): void => this.#refuse(`socket error before a complete PROXY header: ${err.message}`);

  readonly #onClose = (): void => this.#refuse('closed before a complete PROXY header');

  /** Called by the DeadlineQueue. */
  deadlinePassed(): void {
    this.#refuse(`no complete PROXY header within ${this.#timeoutMs} ms`);
  }

  /** Server shutdown: whoever is behind the proxy has not been told anything yet. */
  abort(): void {
    this.#refuse('server shutting down');
  }

  #refuse(reason: string): void {
    if (this.#over) return;
    this.#hooks.log.info({ proxy: this.peer, reason, bytes: this.#reader.heldBytes }, 'PROXY header refused: connection closed unanswered');
    this.#stop();
    this.socket.on('error', ignore); // a reset while it closes
    this.socket.destroy();
    this.#hooks.failed(this);
  }

  /** Hand the socket on (or drop it): no listener or deadline of the handshake remains. */
  #stop(): void {
    this.#over = true;
    this.#hooks.deadlines.clear(this);
    const s = this.socket;
    s.removeListener('data', this.#onData);
    s.removeListener('end', this.#onEnd);
    s.removeListener('error', this.#onError);
    s.removeListener('close', this.#onClose);
  }
}

function ignore(): void {}

/** What the connect log says of a proxied connection. */
export interface ProxiedInfo {
  /** The load balancer's address. */
  proxy: string;
  /** The client's source port as the header gave it; for LOCAL, UNKNOWN and the like, the balancer's. */
  port: number | null;
  version: 1 | 2;
  unspecified: ProxyHeader['unspecified'];
}

