// One SMTP connection: a small dispatcher over the zero-copy scanners (RFC 5321 §4.1) that
// hands each command to its handler in commands/ and writes the replies in order
// (RFC 2920: replies to a pipelined group are batched in one write, inside cork/uncork).
// A handler returns a Reply, a Promise of one (AUTH, end of message), or null (BDAT: the
// reply waits for the chunk). While a promise is pending the socket is paused and the unread
// rest of the chunk is kept, so pipelined commands are answered strictly in order.
import { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { LineScanner } from '../protocol/line-scanner.js';
import { DataScanner } from '../protocol/data-scanner.js';
import { BdatReader } from '../protocol/bdat-reader.js';
import { encodeReply, reply, R, type Reply } from '../protocol/reply.js';
import { normalizeIp } from '../lib/networks.js';
import type { Logger } from '../log/logger.js';
import type { SessionContext } from './context.js';
import type { Transaction } from './transaction.js';
import { dispatch } from './commands/index.js';
import { commitMessage } from './commit.js';
import { authContinue, type AuthFlow } from './commands/auth.js';

export type Mode = 'command' | 'auth' | 'data' | 'bdat' | 'tls' | 'closed';

let nextSessionNumber = 0;

export class Session {
  readonly id: string;
  readonly ctx: SessionContext;
  readonly ip: string;
  readonly port: number;
  readonly trusted: boolean;
  readonly log: Logger;

  helo: string | null = null;
  esmtp = false;
  secure: boolean;
  tlsInfo: { version: string; cipher: string } | undefined;
  authUser: string | undefined;
  auth: AuthFlow | null = null;
  tx: Transaction | null = null;
  errors = 0;
  transactions = 0;
  /** The reply owed after the current BDAT chunk: the chunk's fate was decided by its command. */
  bdatPending: { last: boolean; size: number; refuse: Reply | null } | null = null;

  readonly lines: LineScanner;
  readonly data: DataScanner;
  readonly bdat: BdatReader;

  #socket: Socket;
  #mode: Mode = 'command';
  #out: Buffer[] = [];
  #busy = false;
  #backlog: Buffer[] = [];
  #resumeChunk: Buffer | null = null;
  #resumeAt = 0;
  #onClose: (s: Session) => void;
  #closed = false;

  constructor(ctx: SessionContext, socket: Socket, secure: boolean, onClose: (s: Session) => void) {
    this.ctx = ctx;
    this.#socket = socket;
    this.secure = secure;
    this.#onClose = onClose;
    this.ip = normalizeIp(socket.remoteAddress ?? '');
    this.port = socket.remotePort ?? 0;
    this.trusted = ctx.trusted.has(this.ip);
    this.id = `${Date.now().toString(36)}${(nextSessionNumber++ & 0xffff).toString(36).padStart(4, '0')}`;
    this.log = ctx.log.child({ session: this.id, ip: this.ip });
    const c = ctx.config;
    this.lines = new LineScanner(c.maxCommandLineBytes);
    this.data = new DataScanner({ maxMessageBytes: c.maxMessageBytes });
    this.bdat = new BdatReader({ maxMessageBytes: c.maxMessageBytes });
    if (secure) this.#noteTls(socket as TLSSocket);
    this.#attach(socket);
  }

  get mode(): Mode {
    return this.#mode;
  }
  set mode(m: Mode) {
    if (this.#mode === 'closed') return;
    this.#mode = m;
    this.#socket.setTimeout(m === 'data' || m === 'bdat' ? this.ctx.config.dataTimeoutMs : this.ctx.config.idleTimeoutMs);
  }
  get busy(): boolean {
    return this.#busy;
  }
  /** True while a transaction has started (MAIL accepted) and not ended. */
  get inTransaction(): boolean {
    return this.tx !== null;
  }

  greet(): void {
    this.log.info({ port: this.port, tls: this.secure, trusted: this.trusted }, 'connect');
    this.send(reply(220, '', `${this.ctx.config.hostname} ESMTP postern`));
    this.flush();
  }

  /** Queue a reply; written at the end of the current input chunk. */
  send(r: Reply): void {
    if (this.#closed) return;
    if (r.code >= 400 && r.code !== 421) this.errors++;
    this.#out.push(encodeReply(r));
    if (r.close) {
      this.flush();
      this.#close();
      return;
    }
    if (this.errors >= this.ctx.config.maxErrors) {
      this.#out.push(encodeReply(reply(421, '4.7.0', `${this.ctx.config.hostname} Too many errors, closing connection`)));
      this.flush();
      this.#close();
    }
  }

  flush(): void {
    const out = this.#out;
    if (out.length === 0 || this.#socket.destroyed) {
      out.length = 0;
      return;
    }
    let ok: boolean;
    if (out.length === 1) {
      ok = this.#socket.write(out[0]!);
    } else {
      this.#socket.cork();
      for (const b of out) this.#socket.write(b);
      this.#socket.uncork();
      ok = this.#socket.writableLength === 0 || this.#socket.writableNeedDrain === false;
    }
    out.length = 0;
    if (!ok && !this.#closed) {
      // The client does not read its replies: stop reading its commands until it does.
      this.#socket.pause();
      this.#socket.once('drain', () => {
        if (!this.#busy && !this.#closed) this.#socket.resume();
      });
    }
  }

  /** Close politely: replies already queued are flushed first. */
  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#mode = 'closed';
    this.#socket.end();
    // A client that never reads would keep the socket half-open forever.
    setTimeout(() => this.#socket.destroy(), 5000).unref();
  }

  /** Server shutdown: close at once when idle, else after the transaction in flight. */
  drain(): void {
    if (!this.tx && !this.#busy && (this.#mode === 'command' || this.#mode === 'auth')) {
      this.send(reply(421, '4.3.2', `${this.ctx.config.hostname} Service shutting down`, true));
    }
  }

  /** Shutdown deadline passed: 421 whatever the state. */
  abort(): void {
    if (this.#closed) return;
    this.#out.length = 0;
    this.send(reply(421, '4.3.2', `${this.ctx.config.hostname} Service shutting down, closing transaction`, true));
    this.#socket.destroy();
  }

  get closed(): boolean {
    return this.#closed;
  }

  #attach(socket: Socket): void {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.setTimeout(this.ctx.config.idleTimeoutMs);
    socket.on('data', this.#onData);
    socket.on('timeout', this.#onTimeout);
    socket.on('error', this.#onError);
    socket.on('close', this.#onSocketClose);
  }

  #detach(socket: Socket): void {
    socket.removeListener('data', this.#onData);
    socket.removeListener('timeout', this.#onTimeout);
    socket.removeListener('error', this.#onError);
    socket.removeListener('close', this.#onSocketClose);
  }

  #onTimeout = (): void => {
    this.log.info({ mode: this.#mode }, 'timeout');
    this.#out.length = 0;
    this.send(reply(421, '4.4.2', `${this.ctx.config.hostname} Error: timeout exceeded`, true));
  };

  #onError = (err: Error): void => {
    this.log.debug({ err: err.message }, 'socket error');
  };

  #reported = false;
  #onSocketClose = (): void => {
    this.#closed = true;
    this.#mode = 'closed';
    if (this.#reported) return;
    this.#reported = true;
    this.log.info({ messages: this.transactions, errors: this.errors, auth: this.authUser }, 'disconnect');
    this.#onClose(this);
  };

  #onData = (chunk: Buffer): void => {
    if (this.#busy || this.#backlog.length > 0) {
      this.#backlog.push(chunk);
      return;
    }
    this.#process(chunk, 0);
    this.flush();
  };

  /** Feed one chunk from `pos` through the scanners until it is used up or a handler is pending. */
  #process(chunk: Buffer, pos: number): void {
    // A BDAT 0 chunk has no bytes to wait for: it completes even at the end of the input.
    while (pos < chunk.length || (this.#mode === 'bdat' && this.bdat.remaining === 0)) {
      const mode = this.#mode;
      let r: Reply | Promise<Reply> | null;
      if (mode === 'data') {
        const end = this.data.feed(chunk, pos);
        if (end < 0) return;
        pos = end;
        this.mode = 'command';
        r = this.#endData();
      } else if (mode === 'bdat') {
        const end = this.bdat.feed(chunk, pos);
        if (end < 0) return;
        pos = end;
        this.mode = 'command';
        r = this.#endBdatChunk();
      } else if (mode === 'command' || mode === 'auth') {
        const kind = this.lines.scan(chunk, pos);
        if (kind === 'partial') return;
        pos = this.lines.end;
        if (kind === 'line') {
          r = mode === 'auth' ? authContinue(this, this.lines.line) : dispatch(this, this.lines.line);
        } else if (kind === 'bad-newline') {
          if (mode === 'auth') this.auth = null, this.mode = 'command';
          r = R.badNewline;
        } else {
          // 'too-long': a flood without CRLF, or an absurd line. Answer and close.
          r = reply(500, '5.5.6', 'Line too long', true);
        }
      } else {
        return; // 'tls' (rest of the plaintext is discarded, RFC 3207 §4.2) or 'closed'
      }
      if (r === null) continue;
      if (r instanceof Promise) {
        this.#suspend(r, chunk, pos);
        return;
      }
      this.send(r);
      if (this.#mode === 'tls') {
        this.#startTls();
        return;
      }
    }
  }

  #suspend(p: Promise<Reply>, chunk: Buffer, pos: number): void {
    this.#busy = true;
    this.#resumeChunk = chunk;
    this.#resumeAt = pos;
    this.#socket.pause();
    this.flush();
    p.then(
      (r) => this.#resume(r),
      (err: unknown) => {
        this.log.error({ err }, 'command handler failed');
        this.#resume(reply(451, '4.3.0', 'Local error in processing'));
      },
    );
  }

  #resume(r: Reply): void {
    this.#busy = false;
    if (this.#closed) return;
    this.send(r);
    const chunk = this.#resumeChunk!;
    this.#resumeChunk = null;
    this.#process(chunk, this.#resumeAt);
    while (!this.#busy && this.#backlog.length > 0 && !this.#closed) {
      this.#process(this.#backlog.shift()!, 0);
    }
    this.flush();
    if (!this.#busy && !this.#closed && !this.#socket.writableNeedDrain) this.#socket.resume();
  }

  #endData(): Reply | Promise<Reply> {
    const status = this.data.status;
    if (status !== 'ok') return this.#refuseContent(status);
    return commitMessage(this, this.data);
  }

  #endBdatChunk(): Reply | Promise<Reply> {
    const pending = this.bdatPending!;
    this.bdatPending = null;
    if (pending.refuse) {
      if (pending.last && this.tx) this.tx = null;
      return pending.refuse;
    }
    const status = this.bdat.status;
    if (status !== 'ok') return this.#refuseContent(status);
    if (!pending.last) return reply(250, '2.0.0', `${pending.size} octets received`);
    return commitMessage(this, this.bdat);
  }

  #refuseContent(status: 'too-big' | 'bad-newline' | 'line-too-long' | 'nul-byte'): Reply {
    this.tx = null;
    this.ctx.counters.messagesRejected++;
    this.log.info({ status }, 'message refused');
    this.ctx.onEvent?.({ type: 'rejected', time: new Date().toISOString(), source: 'smtp', reply: `message refused: ${status}`, code: status === 'too-big' ? 552 : 554 });
    if (status === 'too-big') return R.sizeExceeded;
    if (status === 'bad-newline') return R.badNewlineData;
    if (status === 'nul-byte') return R.nulInData;
    return R.dataLineTooLong;
  }

  /** Reset per RFC 3207 §4.2 after the handshake: forget everything learned in plaintext. */
  #startTls(): void {
    this.flush();
    const raw = this.#socket;
    this.#detach(raw);
    raw.on('error', () => {}); // errors now surface on the TLS socket
    this.#backlog.length = 0;
    this.lines.reset();
    this.helo = null;
    this.esmtp = false;
    this.tx = null;
    this.auth = null;
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.ctx.tls!.context });
    const timer = setTimeout(() => {
      this.log.info('TLS handshake timeout');
      secure.destroy();
    }, this.ctx.config.tlsHandshakeTimeoutMs);
    secure.once('secure', () => {
      clearTimeout(timer);
      this.secure = true;
      this.#noteTls(secure);
      this.#mode = 'command';
      this.#attach(secure);
    });
    secure.once('error', (err) => {
      clearTimeout(timer);
      this.log.info({ err: err.message }, 'TLS handshake failed');
      secure.destroy();
    });
    secure.once('close', () => {
      clearTimeout(timer);
      if (!this.#closed) this.#onSocketClose();
    });
  }

  #noteTls(s: TLSSocket): void {
    this.ctx.counters.tlsHandshakes++;
    const c = s.getCipher();
    this.tlsInfo = { version: s.getProtocol() ?? 'TLS', cipher: c?.standardName ?? c?.name ?? 'unknown' };
  }
}
