// One SMTP connection: a small dispatcher over the zero-copy scanners (RFC 5321 §4.1) that
// hands each command to its handler in commands/ and writes the replies in order
// (RFC 2920: replies to a pipelined group are batched in one write, inside cork/uncork).
// A handler returns a Reply, a Promise of one (AUTH, end of message), or null (BDAT: the
// reply waits for the chunk). While a promise is pending the socket is paused and the unread
// rest of the chunk is kept, so pipelined commands are answered strictly in order.
// Sockets are half-open: when the client shuts its write side, every complete command it
// sent is still answered (a message it never saw accepted would be sent twice), then the
// session ends its side.
// Timeouts are deadlines (one at a time per session, in the server's DeadlineQueue), not an
// idle timer that each byte resets: the next command must start within
// POSTERN_IDLE_TIMEOUT_MS and, once started, end within POSTERN_COMMAND_TIMEOUT_MS (a client
// dribbling a byte at a time cannot hold the connection); each block of data has
// POSTERN_DATA_TIMEOUT_MS. Under stress (many connections)
// every deadline is capped at POSTERN_STRESS_TIMEOUT_MS, as Postfix's smtpd does.
import { TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { LineScanner } from '../protocol/line-scanner.js';
import { DataScanner } from '../protocol/data-scanner.js';
import { BdatReader } from '../protocol/bdat-reader.js';
import { encodeReply, reply, R, type Reply } from '../protocol/reply.js';
import type { Logger } from '../log/logger.js';
import type { SessionContext } from './context.js';
import type { Transaction } from './transaction.js';
import { dispatch } from './commands/index.js';
import { commitMessage } from './commit.js';
import { authContinue, type AuthFlow } from './commands/auth.js';
import type { DeadlineQueue } from '../lib/deadline-queue.js';
import type { ProxiedInfo } from './proxy-handshake.js';

/** 'greet': connected, greeting held back (POSTERN_GREET_DELAY_MS); a client that talks now is refused. */
export type Mode = 'greet' | 'command' | 'auth' | 'data' | 'bdat' | 'tls' | 'closed';

/**
 * What the server learns from its sessions (when one closes, when its client sends) and what it
 * lends them all: one object per server, so a session pays one field for it.
 */
export interface SessionHooks {
  closed(s: Session): void;
  /** The client sent bytes (the server keeps its sessions ordered by this, to find the most silent). */
  heard(s: Session): void;
  /** Every session's deadline; an expired one calls Session.deadlinePassed. */
  readonly deadlines: DeadlineQueue<Session>;
  /** The greeting, its bytes made once. */
  readonly greeting: Reply;
  /**
   * The line scanner of every session between lines: a session whose line is left unfinished
   * at the end of a chunk keeps it and puts a new one here (see Session.#process).
   */
  lines: LineScanner;
}

/**
 * What a session learns once its client talks: made on first use, so a connection that only
 * holds its slot (the common case under a connection flood) costs its socket and a Session
 * of a dozen fields.
 */
class SessionState {
  helo: string | null = null;
  esmtp = false;
  tlsInfo: { version: string; cipher: string } | undefined = undefined;
  authUser: string | undefined = undefined;
  auth: AuthFlow | null = null;
  tx: Transaction | null = null;
  errors = 0;
  transactions = 0;
  bdatPending: { last: boolean; size: number; refuse: Reply | null } | null = null;
  data: DataScanner | null = null;
  bdat: BdatReader | null = null;
  /** When message data began, and the socket's bytesRead then (the minimum data rate). */
  dataSince = 0;
  dataBytesAt = 0;
  /** Chunks received while a reply is pending (answered in order once it comes). */
  backlog: Buffer[] = [];
  /** The chunk a pending reply interrupted, and where to go on in it. */
  resumeChunk: Buffer | null = null;
  resumeAt = 0;
}

// Session flags, one small integer instead of a field (8 bytes) each.
const TRUSTED = 1;
const SECURE = 2;
/** A handler's reply is pending: the socket is paused and the deadline stopped. */
const BUSY = 4;
const CLOSED = 8;
/** A command line has begun (bytes without its CRLF yet) and its deadline is running. */
const LINE_STARTED = 16;
/** The client shut its write side (FIN): finish what it sent, then close. */
const INPUT_ENDED = 32;
const REPORTED = 64;
/** Not reading its body: the body memory is past POSTERN_MAX_BODY_MEMORY, or its client past its share (body-budget.ts). */
const WAITING_FOR_MEMORY = 128;
/** The end of a body is being answered (commit, filters): its bytes are still in memory. */
const ANSWERING = 256;

let nextSessionNumber = 0;

const kSession = Symbol('postern.session');
type SessionSocket = Socket & { [kSession]: Session };

export class Session {
  // An idle connection's cost is its socket plus this object, so its fields are few (8 bytes
  // each): flags share one integer, whatever the client's commands create lives in
  // SessionState, the line scanner is the server's between lines, and the deadline is a slot in
  // the server's DeadlineQueue rather than a Timeout of its own.
  readonly id: string;
  readonly ctx: SessionContext;
  readonly ip: string;
  /** What the per-client connection limit counts this session under (an address or an IPv6 prefix). */
  readonly clientKey: string;
  /** Owned by the server's DeadlineQueue. */
  deadlineSlot = -1;

  #flags: number;
  #mode: Mode = 'command';
  #socket: Socket;
  #hooks: SessionHooks;
  /** This session's own line scanner, only while a line is split across chunks (or being skipped). */
  #lines: LineScanner | null = null;
  /** Replies queued during the current chunk; null when none. */
  #out: Buffer[] | null = null;
  #state: SessionState | null = null;
  #log: Logger | null = null;

  /** ip: the client's address (normalized); trusted: whether it is in POSTERN_TRUSTED_NETWORKS (the server has checked both). */
  constructor(ctx: SessionContext, socket: Socket, secure: boolean, hooks: SessionHooks, ip: string, trusted: boolean, clientKey: string) {
    this.ctx = ctx;
    this.#socket = socket;
    this.#hooks = hooks;
    this.clientKey = clientKey;
    this.ip = ip;
    this.#flags = (trusted ? TRUSTED : 0) | (secure ? SECURE : 0);
    this.id = `${Date.now().toString(36)}${(nextSessionNumber++ & 0xffff).toString(36).padStart(4, '0')}`;
    if (secure) this.#noteTls(socket as TLSSocket);
    this.#attach(socket);
  }

  get log(): Logger {
    return (this.#log ??= this.ctx.log.child({ session: this.id, ip: this.ip }));
  }
  #st(): SessionState {
    return (this.#state ??= new SessionState());
  }
  get data(): DataScanner {
    const st = this.#st();
    return (st.data ??= new DataScanner({ maxMessageBytes: this.ctx.config.maxMessageBytes }));
  }
  get bdat(): BdatReader {
    const st = this.#st();
    return (st.bdat ??= new BdatReader({ maxMessageBytes: this.ctx.config.maxMessageBytes }));
  }

  get trusted(): boolean {
    return (this.#flags & TRUSTED) !== 0;
  }
  get secure(): boolean {
    return (this.#flags & SECURE) !== 0;
  }
  get helo(): string | null {
    return this.#state?.helo ?? null;
  }
  set helo(v: string | null) {
    if (v !== null || this.#state !== null) this.#st().helo = v;
  }
  get esmtp(): boolean {
    return this.#state?.esmtp ?? false;
  }
  set esmtp(v: boolean) {
    if (v || this.#state !== null) this.#st().esmtp = v;
  }
  get tlsInfo(): { version: string; cipher: string } | undefined {
    return this.#state?.tlsInfo;
  }
  get authUser(): string | undefined {
    return this.#state?.authUser;
  }
  set authUser(v: string | undefined) {
    if (v !== undefined || this.#state !== null) this.#st().authUser = v;
  }
  get auth(): AuthFlow | null {
    return this.#state?.auth ?? null;
  }
  set auth(v: AuthFlow | null) {
    if (v !== null || this.#state !== null) this.#st().auth = v;
  }
  get tx(): Transaction | null {
    return this.#state?.tx ?? null;
  }
  set tx(v: Transaction | null) {
    if (v !== null || this.#state !== null) this.#st().tx = v;
    // A transaction dropped or replaced takes its body's bytes with it: the BDAT chunks read so
    // far are let go (DATA's scanner holds none once it has ended). commitMessage takes the
    // transaction with takeTransaction(): its bytes stay counted until its reply.
    this.#state?.bdat?.begin();
    this.ctx.bodyBudget?.release(this);
  }
  /** The end of the body: the transaction goes to the commit; its bytes stay counted until the reply. */
  takeTransaction(): Transaction {
    const st = this.#st();
    const tx = st.tx!;
    st.tx = null;
    return tx;
  }
  get errors(): number {
    return this.#state?.errors ?? 0;
  }
  get transactions(): number {
    return this.#state?.transactions ?? 0;
  }
  set transactions(n: number) {
    this.#st().transactions = n;
  }
  /** The reply owed after the current BDAT chunk: the chunk's fate was decided by its command. */
  get bdatPending(): SessionState['bdatPending'] {
    return this.#state?.bdatPending ?? null;
  }
  set bdatPending(v: SessionState['bdatPending']) {
    if (v !== null || this.#state !== null) this.#st().bdatPending = v;
  }

  get mode(): Mode {
    return this.#mode;
  }
  set mode(m: Mode) {
    if (this.#mode === 'closed') return;
    if ((m === 'data' || m === 'bdat') && this.#mode !== m) {
      const st = this.#st();
      st.dataSince = Date.now();
      st.dataBytesAt = this.#socket.bytesRead;
    }
    this.#mode = m; // the deadline of the new mode is armed when the chunk has been processed
  }
  get busy(): boolean {
    return (this.#flags & BUSY) !== 0;
  }
  /** True while a transaction has started (MAIL accepted) and not ended. */
  get inTransaction(): boolean {
    return this.tx !== null;
  }

  /**
   * Greet at once, or after POSTERN_GREET_DELAY_MS for an untrusted client: a client that
   * talks before the greeting (RFC 5321 §4.3.1 makes it wait for it) is a spam engine that
   * does not read replies, and is refused (Postfix postscreen's pregreet test).
   */
  start(proxied: ProxiedInfo | null = null, early: Buffer | null = null): void {
    // Logged through the root logger: the session's child is made only if it logs again.
    if (proxied === null) {
      this.ctx.log.info({ session: this.id, ip: this.ip, port: this.#socket.remotePort, tls: this.secure, trusted: this.trusted }, 'connect');
    } else {
      const { proxy, port, version, unspecified } = proxied;
      this.ctx.log.info({ session: this.id, ip: this.ip, port, proxy, proxyVersion: version, ...(unspecified ? { proxyUnspecified: unspecified } : {}), tls: this.secure, trusted: this.trusted }, 'connect');
    }
    const delay = this.ctx.config.greetDelayMs;
    if (delay > 0 && !this.trusted) {
      this.#mode = 'greet';
      this.#arm(delay, false);
    } else {
      this.#greet();
    }
    // What a proxied client sent right behind the header: its commands (answered after the
    // greeting), or, while the greeting is held back, a pregreet like any other.
    if (early !== null && !(this.#flags & CLOSED)) this.#onData(early);
  }

  #greet(): void {
    this.#mode = 'command';
    this.send(this.#hooks.greeting);
    this.flush();
    this.#rearm();
  }

  /** Queue a reply; written at the end of the current input chunk. */
  send(r: Reply): void {
    if (this.#flags & CLOSED) return;
    if (r.code >= 400 && r.code !== 421) this.#st().errors++;
    const wire = encodeReply(r);
    let out = this.#out;
    if (out === null) this.#out = out = [wire];
    else out.push(wire);
    if (r.close) {
      this.flush();
      this.#close();
      return;
    }
    if (this.errors >= this.ctx.config.maxErrors) {
      out.push(encodeReply(reply(421, '4.7.0', `${this.ctx.config.hostname} Too many errors, closing connection`)));
      this.flush();
      this.#close();
    }
  }

  flush(): void {
    const out = this.#out;
    if (out === null) return;
    this.#out = null;
    const socket = this.#socket;
    if (socket.destroyed) return;
    let ok: boolean;
    if (out.length === 1) {
      ok = socket.write(out[0]!);
    } else {
      socket.cork();
      for (const b of out) socket.write(b);
      socket.uncork();
      ok = socket.writableLength === 0 || socket.writableNeedDrain === false;
    }
    if (!ok && !(this.#flags & CLOSED)) {
      // The client does not read its replies: stop reading its commands until it does.
      socket.pause();
      socket.once('drain', () => {
        if (!(this.#flags & (BUSY | CLOSED))) this.#socket.resume();
      });
    }
  }

  /** Close politely: replies already queued are flushed first. */
  #close(): void {
    if (this.#flags & CLOSED) return;
    this.#flags |= CLOSED;
    this.#mode = 'closed';
    this.#disarm();
    this.#socket.end();
    // A client that never reads would keep the socket half-open forever.
    setTimeout(destroySocket, 5000, this.#socket).unref();
  }

  /** Server shutdown: close at once when idle, else after the transaction in flight. */
  drain(): void {
    if (!this.tx && !(this.#flags & BUSY) && (this.#mode === 'command' || this.#mode === 'auth' || this.#mode === 'greet')) {
      this.send(reply(421, '4.3.2', `${this.ctx.config.hostname} Service shutting down`, true));
    }
  }

  /** Shutdown deadline passed: 421 whatever the state. */
  abort(): void {
    if (this.#flags & CLOSED) return;
    this.#out = null;
    this.send(reply(421, '4.3.2', `${this.ctx.config.hostname} Service shutting down, closing transaction`, true));
    this.#socket.destroy();
  }

  get closed(): boolean {
    return (this.#flags & CLOSED) !== 0;
  }

  /** True when closing this session to make room costs nobody a reply they wait for. */
  get evictable(): boolean {
    return !(this.#flags & (CLOSED | BUSY)) && this.#mode !== 'tls';
  }

  /**
   * The connection limit is reached and this session has been silent longest: close it with
   * 421 so a new client can be served. The server stops counting it at once.
   */
  evict(): void {
    if (this.#flags & CLOSED) return;
    this.log.info({ mode: this.#mode }, 'evicted: silent longest while the connection limit was reached');
    this.#out = null;
    this.send(reply(421, '4.7.0', `${this.ctx.config.hostname} Too many connections; closing the one silent longest`, true));
    this.#report();
  }

  /** The server entered stress mode: shorten the deadline running now. */
  stress(): void {
    if (this.#flags & (CLOSED | BUSY)) return;
    this.#flags &= ~LINE_STARTED;
    if (this.#mode === 'greet') this.#arm(this.ctx.config.greetDelayMs, false);
    else this.#rearm();
  }

  /** (Re)start the deadline of the current state; called after each chunk and each resume. */
  #rearm(): void {
    if (this.#flags & (CLOSED | BUSY)) return;
    const c = this.ctx.config;
    const m = this.#mode;
    if (m === 'data' || m === 'bdat') {
      // Each block must come within the data timeout, and the whole message at least at
      // POSTERN_MIN_DATA_RATE after it (Postfix smtpd_min_data_rate): every byte buys
      // 1/rate s more, so a client dribbling a byte at a time cannot keep its slot forever.
      // The time bought is capped at twice the data timeout ahead (the excess is forgotten):
      // otherwise a client could send most of a large body at once, banking hours (25 MiB at
      // 500 bytes/s is 14.5 h), then hold that body in memory with a byte per block. A client
      // that keeps to the rate never reaches the cap.
      let ms = c.dataTimeoutMs;
      if (c.minDataRate > 0) {
        const st = this.#st();
        const now = Date.now();
        let deadline = st.dataSince + c.dataTimeoutMs + ((this.#socket.bytesRead - st.dataBytesAt) * 1000) / c.minDataRate;
        const cap = now + 2 * c.dataTimeoutMs;
        if (deadline > cap) {
          st.dataSince -= deadline - cap;
          deadline = cap;
        }
        ms = Math.max(1, Math.min(ms, Math.ceil(deadline - now)));
      }
      this.#arm(ms, true);
    } else if (m === 'command' || m === 'auth') {
      if (this.#lines === null || this.#lines.pendingBytes === 0) {
        this.#flags &= ~LINE_STARTED;
        this.#arm(c.idleTimeoutMs, true);
      } else if (!(this.#flags & LINE_STARTED)) {
        // The deadline runs from the line's first byte; later bytes of it do not move it.
        this.#flags |= LINE_STARTED;
        this.#arm(c.commandTimeoutMs, true);
      }
    }
  }

  #arm(ms: number, stressable: boolean): void {
    if (stressable && this.ctx.stressed) ms = Math.min(ms, this.ctx.config.stressTimeoutMs);
    this.#hooks.deadlines.set(this, ms);
  }

  #disarm(): void {
    this.#hooks.deadlines.clear(this);
  }

  /** The deadline armed last has passed (called by the server's DeadlineQueue). */
  deadlinePassed(): void {
    if (this.#mode === 'greet') return this.#greet();
    if (this.#flags & CLOSED) return;
    if (this.#flags & WAITING_FOR_MEMORY) {
      this.log.warn({ waitedMs: this.ctx.config.dataTimeoutMs, client: this.clientKey, bodyMemory: this.ctx.bodyBudget?.stats() }, 'message data waited too long for memory: 421');
      this.#out = null;
      this.send(reply(421, '4.3.2', `${this.ctx.config.hostname} Too busy to take message data now, try again later`, true));
      return;
    }
    this.log.info({ mode: this.#mode, stressed: this.ctx.stressed === true }, 'timeout');
    this.#out = null;
    this.send(reply(421, '4.4.2', `${this.ctx.config.hostname} Error: timeout exceeded`, true));
  }

  #attach(socket: Socket): void {
    this.#socket = socket;
    (socket as SessionSocket)[kSession] = this;
    socket.on('data', Session.#dataListener);
    socket.on('error', Session.#errorListener);
    socket.on('end', Session.#endListener);
    socket.on('close', Session.#closeListener);
  }

  // One listener of each kind for every socket, finding its session through a symbol: a closure
  // per session per event would cost an idle connection a few hundred bytes more.
  static #dataListener(this: Socket, chunk: Buffer): void {
    (this as SessionSocket)[kSession].#onData(chunk);
  }
  static #errorListener(this: Socket, err: Error): void {
    (this as SessionSocket)[kSession].#onError(err);
  }
  static #endListener(this: Socket): void {
    (this as SessionSocket)[kSession].#onEnd();
  }
  static #closeListener(this: Socket): void {
    (this as SessionSocket)[kSession].#onSocketClose();
  }

  #detach(socket: Socket): void {
    socket.removeListener('data', Session.#dataListener);
    socket.removeListener('error', Session.#errorListener);
    socket.removeListener('end', Session.#endListener);
    socket.removeListener('close', Session.#closeListener);
  }

  #onEnd(): void {
    this.#flags |= INPUT_ENDED;
    this.#closeIfInputDone();
  }

  get #backlogged(): boolean {
    return this.#state !== null && this.#state.backlog.length > 0;
  }

  /** After a FIN: once nothing the client sent is waiting for its reply, close our side. */
  #closeIfInputDone(): void {
    if ((this.#flags & (INPUT_ENDED | BUSY | CLOSED)) !== INPUT_ENDED || this.#backlogged) return;
    this.flush();
    this.log.debug({ mode: this.#mode }, 'client closed its side');
    this.#close();
  }

  #onError(err: Error): void {
    this.log.debug({ err: err.message }, 'socket error');
  }

  #onSocketClose(): void {
    this.#flags |= CLOSED;
    this.#mode = 'closed';
    this.#disarm();
    if (!(this.#flags & ANSWERING)) this.ctx.bodyBudget?.release(this);
    this.#report();
  }

  #report(): void {
    if (this.#flags & REPORTED) return;
    this.#flags |= REPORTED;
    this.log.info({ messages: this.transactions, errors: this.errors, auth: this.authUser }, 'disconnect');
    this.#hooks.closed(this);
  }

  #onData(chunk: Buffer): void {
    this.#hooks.heard(this);
    if (this.#mode === 'greet') {
      this.log.info('pregreet: the client talked before the greeting');
      this.ctx.counters.connectionsRejected++;
      this.send(reply(554, '5.5.1', `${this.ctx.config.hostname} Protocol error: talking before the greeting`, true));
      return;
    }
    if (this.#flags & BUSY || this.#backlogged) {
      this.#st().backlog.push(chunk);
      return;
    }
    this.#process(chunk, 0);
    this.flush();
    this.#rearm();
  }

  /** Feed one chunk from `pos` through the scanners until it is used up or a handler is pending. */
  #process(chunk: Buffer, pos: number): void {
    // A BDAT 0 chunk has no bytes to wait for: it completes even at the end of the input.
    while (pos < chunk.length || (this.#mode === 'bdat' && this.bdat.remaining === 0)) {
      const mode = this.#mode;
      let r: Reply | Promise<Reply> | null;
      let holdsBody = false;
      if (mode === 'data') {
        const end = this.#feedBody(this.data, chunk, pos);
        if (end < 0) return;
        pos = end;
        this.mode = 'command';
        r = this.#endData();
      } else if (mode === 'bdat') {
        const end = this.#feedBody(this.bdat, chunk, pos);
        if (end < 0) return;
        pos = end;
        this.mode = 'command';
        const pending = this.bdatPending;
        // A chunk that is not LAST leaves its bytes held until the next: small chunks, each
        // answered before the next is sent, must wait for room too.
        holdsBody = pending !== null && !pending.last && pending.refuse === null && this.bdat.status === 'ok';
        r = this.#endBdatChunk();
      } else if (mode === 'command' || mode === 'auth') {
        // Between lines the server's scanner serves (it is at rest, carrying nothing from one
        // chunk or session to the next); a line left unfinished keeps the scanner it began in.
        const lines = this.#lines ?? this.#hooks.lines;
        const kind = lines.scan(chunk, pos);
        pos = lines.end;
        if (lines.atRest) {
          this.#lines = null;
        } else if (this.#lines === null) {
          this.#lines = lines;
          this.#hooks.lines = new LineScanner(this.ctx.config.maxCommandLineBytes);
        }
        if (kind === 'partial') return;
        this.#flags &= ~LINE_STARTED;
        if (kind === 'line') {
          r = mode === 'auth' ? authContinue(this, lines.line) : dispatch(this, lines.line);
        } else if (kind === 'bad-newline') {
          if (mode === 'auth') {
            this.auth = null;
            this.mode = 'command';
          }
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
      if (holdsBody && this.#mustWaitForMemory()) {
        this.#waitForMemory(chunk, pos);
        return;
      }
      if (this.#mode === 'tls') {
        this.#startTls();
        return;
      }
    }
  }

  #suspend(p: Promise<Reply>, chunk: Buffer, pos: number): void {
    this.#flags |= BUSY;
    const st = this.#st();
    st.resumeChunk = chunk;
    st.resumeAt = pos;
    this.#disarm(); // waiting on us (a commit, a filter, a password check) costs the client no time
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

  /**
   * Feed message data to its scanner. What the scanner keeps counts against
   * POSTERN_MAX_BODY_MEMORY and the client's share of it (body-budget.ts; nothing past a
   * refusal such as too-big). -1: the chunk is used up mid-body, and the session may now be
   * waiting for memory.
   */
  #feedBody(scanner: { readonly size: number; feed(chunk: Buffer, pos: number): number }, chunk: Buffer, pos: number): number {
    const before = scanner.size;
    const end = scanner.feed(chunk, pos);
    this.ctx.bodyBudget?.add(this, scanner.size - before);
    if (end < 0 && this.#mustWaitForMemory()) this.#waitForMemory(null, 0);
    return end;
  }

  /**
   * Past the bound and this body not the first begun, or the client past its share and this
   * not its body begun first: stop reading until there is room.
   */
  #mustWaitForMemory(): boolean {
    const budget = this.ctx.bodyBudget;
    return budget !== undefined && !budget.mayGoOn(this);
  }

  /**
   * Stop reading (socket paused, TCP holds the client back) until bodies ahead are answered
   * (for a client past its share: its own bodies ahead); `chunk` from `pos` is what is left
   * of the input to go on with then. The data deadline stops, but the wait has one of its
   * own, as long: sessions held back past the bound cannot keep their bytes forever, nor can
   * a first body dribbling at the minimum data rate hold the others back for hours; at the
   * deadline, 421 and close.
   */
  #waitForMemory(chunk: Buffer | null, pos: number): void {
    this.#flags |= BUSY | WAITING_FOR_MEMORY;
    const st = this.#st();
    st.resumeChunk = chunk !== null && pos < chunk.length ? chunk : null;
    st.resumeAt = pos;
    this.#arm(this.ctx.config.dataTimeoutMs, true);
    this.#socket.pause();
    this.#waitForRoom(Date.now(), true);
  }

  #waitForRoom(since: number, first: boolean): void {
    // Woken from another session's release: go on in a turn of our own.
    this.ctx.bodyBudget!.wait(this, () => setImmediate(() => this.#roomMade(since)), first);
  }

  #roomMade(since: number): void {
    if (this.#flags & CLOSED) return;
    if (!this.ctx.bodyBudget!.mayGoOn(this)) return this.#waitForRoom(since, false);
    this.#flags &= ~(BUSY | WAITING_FOR_MEMORY);
    const st = this.#st();
    // The wait was ours, not the client's: its data deadline moves by as much.
    st.dataSince += Date.now() - since;
    const chunk = st.resumeChunk;
    if (chunk !== null) {
      st.resumeChunk = null;
      this.#process(chunk, st.resumeAt);
    }
    this.#goOn();
  }

  #resume(r: Reply): void {
    this.#flags &= ~BUSY;
    if (this.#flags & CLOSED) return;
    this.send(r);
    const st = this.#st();
    const chunk = st.resumeChunk!;
    st.resumeChunk = null;
    this.#process(chunk, st.resumeAt);
    this.#goOn();
  }

  /** Go on with what the client sent while we were busy, then read again. */
  #goOn(): void {
    const st = this.#st();
    while (!(this.#flags & (BUSY | CLOSED)) && st.backlog.length > 0) {
      this.#process(st.backlog.shift()!, 0);
    }
    this.flush();
    if (!(this.#flags & (BUSY | CLOSED)) && !this.#socket.writableNeedDrain) this.#socket.resume();
    this.#rearm();
    this.#closeIfInputDone();
  }

  #endData(): Reply | Promise<Reply> {
    const status = this.data.status;
    if (status !== 'ok') return this.#refuseContent(status);
    return this.#bodyAnswered(commitMessage(this, this.data));
  }

  /** The body's bytes are free once its reply is known (until then they are in memory, even if the client has gone). */
  #bodyAnswered(r: Reply | Promise<Reply>): Reply | Promise<Reply> {
    const budget = this.ctx.bodyBudget;
    if (budget === undefined) return r;
    if (!(r instanceof Promise)) {
      budget.release(this);
      return r;
    }
    this.#flags |= ANSWERING;
    return r.finally(() => {
      this.#flags &= ~ANSWERING;
      budget.release(this);
    });
  }

  #endBdatChunk(): Reply | Promise<Reply> {
    const pending = this.bdatPending!;
    this.bdatPending = null;
    if (pending.refuse) {
      if (pending.last && this.tx) this.tx = null;
      this.ctx.bodyBudget?.release(this); // the refused chunk was read and dropped
      return pending.refuse;
    }
    const status = this.bdat.status;
    if (status !== 'ok') return this.#refuseContent(status);
    if (!pending.last) return reply(250, '2.0.0', `${pending.size} octets received`);
    return this.#bodyAnswered(commitMessage(this, this.bdat));
  }

  #refuseContent(status: 'too-big' | 'bad-newline' | 'line-too-long' | 'nul-byte'): Reply {
    this.tx = null;
    this.ctx.counters.messagesRejected++;
    this.log.info({ status }, 'message refused');
    this.ctx.onEvent?.({ type: 'rejected', time: new Date().toISOString(), source: 'smtp', client: this.ip, reply: `message refused: ${status}`, code: status === 'too-big' ? 552 : 554 }, { untrusted: !this.trusted && this.authUser === undefined });
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
    this.#lines = null;
    // Everything the client said or proved in plaintext goes: its name, the transaction, and
    // an AUTH done before TLS (the plaintext could have been spliced by a man in the middle).
    // The counts (errors, messages) stay.
    const st = this.#st();
    st.backlog.length = 0;
    st.helo = null;
    st.esmtp = false;
    st.tx = null;
    st.auth = null;
    st.authUser = undefined;
    st.bdatPending = null;
    this.#disarm(); // the handshake has its own timeout below
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.ctx.tls!.context });
    const timer = setTimeout(() => {
      this.log.info('TLS handshake timeout');
      secure.destroy();
    }, this.ctx.config.tlsHandshakeTimeoutMs);
    secure.once('secure', () => {
      clearTimeout(timer);
      this.#flags |= SECURE;
      this.#noteTls(secure);
      this.#mode = 'command';
      this.#attach(secure);
      this.#rearm();
    });
    secure.once('error', (err) => {
      clearTimeout(timer);
      this.log.info({ err: err.message }, 'TLS handshake failed');
      secure.destroy();
    });
    secure.once('close', () => {
      clearTimeout(timer);
      if (!(this.#flags & CLOSED)) this.#onSocketClose();
    });
  }

  #noteTls(s: TLSSocket): void {
    this.ctx.counters.tlsHandshakes++;
    const c = s.getCipher();
    this.#st().tlsInfo = { version: s.getProtocol() ?? 'TLS', cipher: c?.standardName ?? c?.name ?? 'unknown' };
  }
}

function destroySocket(socket: Socket): void {
  socket.destroy();
}
