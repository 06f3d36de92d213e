// The SMTP listeners: a plain `net` server (STARTTLS when a certificate is set) and an
// implicit-TLS `tls` server (RFC 8314). Owns the connection limits (total and per client
// address or IPv6 prefix, 421 4.7.0) and graceful shutdown: stop accepting, 421 idle sessions, let open
// transactions finish until the deadline, then 421 the rest. At the total limit a new client
// is still served: the session silent longest is closed (421 4.7.0) to make room (a stranger
// never pushes out a trusted or authenticated client), so idle
// connections cannot lock everyone out. Past POSTERN_STRESS_PERCENT of the limit the node is
// "stressed" and the sessions' deadlines shrink (Postfix's stress mode). The server lends its
// sessions one DeadlineQueue (their timeouts on one timer) and one line scanner.
// A connection from POSTERN_PROXY_TRUSTED is admitted only once its PROXY header is read
// (proxy-handshake.ts): every check here then sees the client address the header carries.
// An implicit-TLS connection holds its client's slot from its first byte: the per-client and
// total limits apply before its handshake (which may take POSTERN_TLS_HANDSHAKE_TIMEOUT_MS),
// not only once it is a session; past them it is closed unanswered (no clear text on that port).
import { createServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { createServer as createTlsServer, TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { encodeReply, reply, type Reply } from '../protocol/reply.js';
import { clientKey, normalizeIp, NetworkList } from '../lib/networks.js';
import { PosternError } from '../errors.js';
import { Session, type SessionHooks } from './session.js';
import { DeadlineQueue } from '../lib/deadline-queue.js';
import { LineScanner } from '../protocol/line-scanner.js';
import type { SessionContext } from './context.js';
import { ProxyHandshake, type ProxyHandshakeHooks, type ProxiedInfo } from './proxy-handshake.js';
import type { ProxyHeader } from '../protocol/proxy-header.js';

export class SmtpServer {
  readonly ctx: SessionContext;
  /**
   * Open sessions, least recently heard first: a session is moved to the end each time its
   * client sends (delete + add keeps a Set in that order in O(1)), so the first evictable one
   * is the one silent longest.
   */
  readonly #sessions = new Set<Session>();
  readonly #stressAt: number;
  /** Stress ends below this, a tenth under #stressAt, so a count hovering at the threshold does not flap. */
  readonly #stressEndsBelow: number;
  readonly #perIp = new Map<string, number>();
  #plain: Server | null = null;
  /** The implicit-TLS listener: a tls.Server, or with POSTERN_PROXY_TRUSTED a net.Server (TLS begins after the header). */
  #implicit: Server | null = null;
  /** POSTERN_PROXY_TRUSTED; null when empty (no connection is read for a header). */
  readonly #proxies: NetworkList | null;
  /** Proxied connections whose header is still being read; their hooks (null without proxies). */
  readonly #handshakes = new Set<ProxyHandshake>();
  /** The implicit-TLS listener's TCP connections, handshaking or not (see listen). */
  readonly #tlsRaw = new Set<Socket>();
  /**
   * Implicit-TLS connections in their handshake, by "address|port" of the socket: the client
   * key whose #perIp slot each holds until it is admitted (the slot passes to its session) or
   * closes.
   */
  readonly #handshaking = new Map<string, string>();
  readonly #handshakeHooks: ProxyHandshakeHooks | null;

  constructor(ctx: SessionContext) {
    this.ctx = ctx;
    const c = ctx.config;
    this.#stressAt = Math.max(1, Math.ceil((c.maxConnections * c.stressPercent) / 100));
    this.#stressEndsBelow = Math.max(1, Math.floor(this.#stressAt * 0.9));
    ctx.stressed = false;
    const greeting: Reply = reply(220, '', `${c.hostname} ESMTP postern`);
    greeting.wire = encodeReply(greeting);
    this.#hooks = {
      greeting,
      closed: (s) => this.#closed(s),
      heard: (s) => this.#heard(s),
      deadlines: new DeadlineQueue<Session>((s) => s.deadlinePassed()),
      lines: new LineScanner(c.maxCommandLineBytes),
    };
    this.#proxies = c.proxyTrusted.length > 0 ? new NetworkList(c.proxyTrusted) : null;
    this.#handshakeHooks =
      this.#proxies === null
        ? null
        : {
            deadlines: new DeadlineQueue<ProxyHandshake>((h) => h.deadlinePassed()),
            log: ctx.log,
            done: (h, header, rest) => {
              this.#handshakes.delete(h);
              this.#proxied(h, header, rest);
            },
            failed: (h) => {
              if (this.#handshakes.delete(h)) ctx.counters.connectionsRejected++;
            },
          };
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * Bind the listeners, or take the inherited sockets `fds` names (socket activation or a
   * takeover: then the configured host and ports are not bound); resolves with the actual
   * ports (0 in the config picks a free one).
   */
  async listen(fds?: { smtp?: number | undefined; smtps?: number | undefined }): Promise<{ smtpPort: number; smtpsPort: number | null }> {
    const c = this.ctx.config;
    // allowHalfOpen: a client may shut its write side right after its last command (QUIT or
    // not); the replies owed to what it sent must still go out, the session ends its side then.
    this.#plain = createServer({ noDelay: true, pauseOnConnect: false, allowHalfOpen: true }, (sock) => this.#accept(sock, false));
    await this.#bind(this.#plain, c.smtpHost, c.smtpPort, 'POSTERN_SMTP_PORT', fds?.smtp);
    let smtpsPort: number | null = null;
    if (c.smtpsPort !== null && this.ctx.tls) {
      if (this.#proxies === null) {
        const tlsServer = createTlsServer({ ...this.ctx.tls.options, handshakeTimeout: c.tlsHandshakeTimeoutMs, allowHalfOpen: true }, (sock) => this.#accept(sock, true));
        // Node only reports a failed or timed-out handshake here and leaves the socket open (and,
        // with allowHalfOpen, a client's FIN mid-handshake unnoticed): without the destroy, the
        // handshake deadline cuts nothing and server.close() waits for the client to leave.
        tlsServer.on('tlsClientError', (err, sock) => {
          this.ctx.log.debug({ err: err.message }, 'TLS client error');
          sock.destroy();
        });
        // Every raw connection until it closes: at shutdown, those still in their handshake
        // (not sessions yet) are cut, or close() would wait for their handshake deadline.
        // tls.Server's own listener (added first) has wrapped the socket by now; closing the raw
        // socket ends that TLS socket too.
        tlsServer.on('connection', (raw: Socket) => {
          this.#tlsRaw.add(raw);
          raw.once('close', () => this.#tlsRaw.delete(raw));
          if (!this.#hold(raw, normalizeIp(raw.remoteAddress ?? ''))) raw.destroy();
        });
        this.#implicit = tlsServer;
      } else {
        // A proxy's header comes before the client's TLS handshake, in clear: this listener
        // reads it first (from POSTERN_PROXY_TRUSTED only) and starts TLS on the socket itself.
        this.#implicit = createServer({ noDelay: true, allowHalfOpen: true }, (sock) => this.#accept(sock, true));
      }
      await this.#bind(this.#implicit, c.smtpHost, c.smtpsPort, 'POSTERN_SMTPS_PORT', fds?.smtps);
      smtpsPort = (this.#implicit.address() as AddressInfo).port;
    }
    return { smtpPort: (this.#plain.address() as AddressInfo).port, smtpsPort };
  }

  async #bind(server: Server, host: string, port: number, variable: string, fd: number | undefined): Promise<void> {
    server.listen(fd === undefined ? { host, port, backlog: 1024 } : { fd, backlog: 1024 });
    try {
      await Promise.race([once(server, 'listening'), once(server, 'error').then(([e]) => Promise.reject(e))]);
    } catch (cause) {
      const where = fd === undefined ? `${host}:${port} (${variable})` : `inherited socket ${fd} (for ${variable})`;
      throw new PosternError(fd === undefined ? 'PST_ERR_LISTEN' : 'PST_ERR_LISTEN_FDS', `cannot listen on ${where}: ${(cause as Error).message}`, { cause });
    }
    const bound = server.address();
    if (fd !== undefined && (bound === null || typeof bound === 'string')) {
      server.close();
      throw new PosternError('PST_ERR_LISTEN_FDS', `inherited socket ${fd} (for ${variable}) is not a TCP socket: ${String(server.address())}`);
    }
    server.on('error', (err) => this.ctx.log.error({ err }, 'listener error'));
  }

  /**
   * The listening sockets' fds, to hand to a successor process (a takeover). Node keeps the fd
   * of a listening TCP handle on `_handle.fd` on Unix (not a public API, so checked here).
   */
  listenerFds(): { smtp: number; smtps?: number } {
    const fdOf = (s: Server | null): number | undefined => {
      const fd = (s as unknown as { _handle?: { fd?: unknown } } | null)?._handle?.fd;
      return typeof fd === 'number' && fd >= 0 ? fd : undefined;
    };
    const smtp = fdOf(this.#plain);
    if (smtp === undefined) throw new PosternError('PST_ERR_TAKEOVER', 'the SMTP listener has no fd to hand over (not listening, or not Unix)');
    const smtps = fdOf(this.#implicit);
    if (this.#implicit !== null && smtps === undefined) throw new PosternError('PST_ERR_TAKEOVER', 'the SMTPS listener has no fd to hand over');
    return smtps === undefined ? { smtp } : { smtp, smtps };
  }

  /**
   * secure: the connection came to the implicit-TLS port. With POSTERN_PROXY_TRUSTED that port
   * is plain TCP, and TLS is started here (after the header, for a proxied connection).
   */
  #accept(socket: Socket | TLSSocket, secure: boolean): void {
    const peer = normalizeIp(socket.remoteAddress ?? '');
    this.ctx.counters.connections++;
    if (this.#proxies === null) return this.#admit(socket, secure, peer, null, null);
    // The spec's rule: from a trusted proxy a header must come (no guessing whether it is there),
    // from anyone else it is never read (it is then an unknown SMTP command).
    if (this.#proxies.has(peer)) {
      this.#handshakes.add(new ProxyHandshake(socket, secure, peer, this.ctx.config.proxyTimeoutMs, this.#handshakeHooks!));
    } else if (secure) {
      this.#startTls(socket, peer, null, null);
    } else {
      this.#admit(socket, false, peer, null, null);
    }
  }

  /** A proxied connection's header is read: admit the client it names (or the proxy, for LOCAL/UNKNOWN). */
  #proxied(h: ProxyHandshake, header: ProxyHeader, rest: Buffer | null): void {
    const a = header.addresses;
    const ip = a === null ? h.peer : normalizeIp(a.source);
    const proxied: ProxiedInfo = { proxy: h.peer, port: a === null ? (h.socket.remotePort ?? null) : a.sourcePort, version: header.version, unspecified: header.unspecified };
    if (h.implicitTls) this.#startTls(h.socket, ip, proxied, rest);
    else this.#admit(h.socket, false, ip, proxied, rest);
  }

  /**
   * Implicit TLS on a socket of the plain listener (as tls.Server would, with its handshake
   * timeout), then admit the client. `rest`: the first bytes of the handshake, read with the
   * PROXY header; given back to the socket, where the TLS layer reads them first.
   */
  #startTls(raw: Socket, ip: string, proxied: ProxiedInfo | null, rest: Buffer | null): void {
    if (!this.#hold(raw, ip)) {
      raw.destroy();
      return;
    }
    raw.pause();
    if (rest !== null) raw.unshift(rest);
    raw.on('error', ignore); // errors surface on the TLS socket
    const secure = new TLSSocket(raw, { isServer: true, secureContext: this.ctx.tls!.context });
    const fail = (err: Error): void => {
      clearTimeout(timer);
      this.ctx.log.debug({ ip, err: err.message }, 'TLS client error');
      secure.destroy();
    };
    const timer = setTimeout(fail, this.ctx.config.tlsHandshakeTimeoutMs, new Error('TLS handshake timeout'));
    secure.once('error', fail);
    secure.once('close', () => clearTimeout(timer));
    secure.once('secure', () => {
      clearTimeout(timer);
      secure.removeListener('error', fail);
      this.#admit(secure, true, ip, proxied, null);
    });
  }

  /**
   * Limits, then a Session for the client at `ip`. proxied: what the PROXY header said, for the
   * connect log; early: bytes the client sent with the header, handled once it is greeted.
   */
  #admit(socket: Socket | TLSSocket, secure: boolean, ip: string, proxied: ProxiedInfo | null, early: Buffer | null): void {
    const ctx = this.ctx;
    const c = ctx.config;
    if (secure) this.#release(connectionId(socket)); // its slot is taken again below, as a session's
    if (ctx.draining) return this.#refuse(socket, reply(421, '4.3.2', `${c.hostname} Service shutting down`, true));
    // The per-address limit first: one host may not evict others' sessions past its share.
    // IPv6 clients are counted by prefix (POSTERN_IPV6_PREFIX), as one host owns a /64.
    const key = clientKey(ip, c.ipv6Prefix);
    const n = this.#perIp.get(key) ?? 0;
    const trusted = ctx.trusted.has(ip);
    if (n >= c.maxConnectionsPerIp && !trusted) {
      return this.#refuse(socket, reply(421, '4.7.0', `${c.hostname} Too many connections from your address, try again later`, true));
    }
    if (this.#sessions.size >= c.maxConnections && !this.#evictOne(trusted)) {
      return this.#refuse(socket, reply(421, '4.7.0', `${c.hostname} Too many connections, try again later`, true));
    }
    this.#perIp.set(key, n + 1);
    const session = new Session(ctx, socket, secure, this.#hooks, ip, trusted, key);
    this.#sessions.add(session);
    this.#updateStress();
    session.start(proxied, early);
  }

  /**
   * An implicit-TLS connection from `ip` before its handshake: take a slot of its client (the
   * per-client limit, trusted networks exempt) and of the total (sessions + handshakes; a
   * handshake does not evict a session). false: over a limit, the caller closes it.
   */
  #hold(raw: Socket, ip: string): boolean {
    const ctx = this.ctx;
    const c = ctx.config;
    if (ctx.draining) return false;
    const key = clientKey(ip, c.ipv6Prefix);
    const n = this.#perIp.get(key) ?? 0;
    if ((n >= c.maxConnectionsPerIp && !ctx.trusted.has(ip)) || this.#sessions.size + this.#handshaking.size >= c.maxConnections) {
      ctx.counters.connectionsRejected++;
      return false;
    }
    const id = connectionId(raw);
    this.#perIp.set(key, n + 1);
    this.#handshaking.set(id, key);
    raw.once('close', () => this.#release(id));
    return true;
  }

  /** Give back the slot a handshake held (no-op when it holds none: admitted, or never held). */
  #release(id: string): void {
    const key = this.#handshaking.get(id);
    if (key === undefined) return;
    this.#handshaking.delete(id);
    const left = (this.#perIp.get(key) ?? 1) - 1;
    if (left <= 0) this.#perIp.delete(key);
    else this.#perIp.set(key, left);
  }

  /** Shared by every session (one object, not a closure per connection). */
  readonly #hooks: SessionHooks;

  #closed(s: Session): void {
    if (!this.#sessions.delete(s)) return;
    const left = (this.#perIp.get(s.clientKey) ?? 1) - 1;
    if (left <= 0) this.#perIp.delete(s.clientKey);
    else this.#perIp.set(s.clientKey, left);
    this.#updateStress();
    if (this.#sessions.size === 0) this.#idleWaiters.splice(0).forEach((f) => f());
  }

  #heard(s: Session): void {
    // Only a session still counted moves; an evicted one may still send before its socket closes.
    if (this.#sessions.delete(s)) this.#sessions.add(s);
  }

  /**
   * Close the session silent longest to make room; false when every session is waiting on
   * us (a commit, a filter, a TLS handshake). A session mid-transaction is fair game: silent
   * longest, it is the likeliest to be stalled, and its client will retry. A stranger never
   * takes the place of a trusted or authenticated client (an idle pooled submission
   * connection, a trusted sender between two writes of DATA): connecting costs nothing, and
   * these clients are the ones the node is for.
   */
  #evictOne(newcomerTrusted: boolean): boolean {
    for (const s of this.#sessions) {
      if (!s.evictable) continue;
      if (!newcomerTrusted && (s.trusted || s.authUser !== undefined)) continue;
      s.evict();
      return true;
    }
    return false;
  }

  #updateStress(): void {
    const n = this.#sessions.size;
    const stressed = this.ctx.stressed ? n >= this.#stressEndsBelow : n >= this.#stressAt;
    if (stressed === this.ctx.stressed) return;
    this.ctx.stressed = stressed;
    this.ctx.log.warn({ sessions: this.#sessions.size, threshold: this.#stressAt }, stressed ? 'stress mode: deadlines shortened' : 'stress mode over');
    // Once per episode (O(sessions)): the sessions already open get the short deadline too.
    if (stressed) for (const s of this.#sessions) s.stress();
  }

  #refuse(socket: Socket, r: ReturnType<typeof reply>): void {
    socket.on('error', ignore); // a reset while refusing must not crash the node
    this.ctx.counters.connectionsRejected++;
    socket.end(encodeReply(r));
    setTimeout(() => socket.destroy(), 2000).unref();
  }

  #idleWaiters: Array<() => void> = [];

  /**
   * Graceful shutdown: stop listening, close idle sessions with 421, wait for open
   * transactions up to `timeoutMs`, then 421 and close whatever is left.
   */
  async close(timeoutMs = this.ctx.config.shutdownTimeoutMs): Promise<void> {
    this.ctx.draining = true;
    for (const h of this.#handshakes) h.abort();
    const closing = [this.#plain, this.#implicit].filter((s): s is Server => s !== null).map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.#sessions) s.drain();
    if (this.#sessions.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#idleWaiters.push(r)),
        new Promise<void>((r) => (timer = setTimeout(r, timeoutMs))),
      ]);
      clearTimeout(timer);
      for (const s of this.#sessions) s.abort();
    }
    // What is left are handshakes (a session's socket is closed by now): no session to drain.
    for (const raw of this.#tlsRaw) raw.destroy();
    await Promise.all(closing);
  }
}

function ignore(): void {}

/** A TCP connection's identity while it is open: its peer's address and port (a TLS socket reports its TCP socket's). */
function connectionId(s: Socket): string {
  return `${s.remoteAddress ?? ''}|${s.remotePort ?? ''}`;
}
