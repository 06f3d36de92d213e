// One outbound SMTP (RFC 5321) or LMTP (RFC 2033) connection: greeting, EHLO/LHLO (HELO
// fallback), STARTTLS (RFC 3207) by TLS policy, and transactions with PIPELINING (RFC 2920),
// SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461) and BDAT
// (RFC 3030) whenever an SMTP server offers CHUNKING (LMTP: binary bodies only). Timeouts follow RFC 5321 §4.5.3.2. Outcomes are
// values (OpenResult, RecipientResult[]); nothing here throws for a remote failure.
// TLS: 'opportunistic' upgrades when STARTTLS is offered without verifying the certificate; a
// refused STARTTLS goes on in clear. A failed handshake (or the link lost before the EHLO
// reply over TLS) leaves the socket unusable; with `plaintext: 'retry'`, which is obeyed only
// where tls-fallback.ts allows it (nothing demands TLS), the same address is connected to once
// more in clear, without STARTTLS, and that connection is the result (Postfix's plaintext
// retry at smtp_tls_security_level = may). The retry never retries (no loop); when it fails
// too, the TLS failure is returned. Text injected after the 220 is a protocol error, not a
// failed handshake: no retry. `plaintext: 'clear'` skips STARTTLS (the host failed TLS
// lately), and a connection in clear either way never carries a REQUIRETLS message (451 4.7.0).
// 'required' never sends in clear: no STARTTLS → transient 4.7.0; the certificate is verified
// unless rejectUnauthorized is false.
// 'implicit' (RFC 8314, port 465) starts TLS on connecting, verified as 'required', and never
// speaks in clear: a failed handshake fails the connection transiently.
// AUTH (RFC 4954) with credentials: PLAIN (RFC 4616) when offered, else LOGIN, and only once
// the connection is TLS with a certificate that verified (never over a connection an attacker
// on the path could read); any failure, a 535 included, fails the connection transiently (as
// Postfix's smtp_sasl_auth_soft_bounce): wrong credentials are the operator's to fix, not a
// reason to bounce the mail. The password never appears in a reply record, even if the server
// echoes it.
// A destination with a TLS policy (tlsAuth: MTA-STS, DANE) is checked by tls-verify.ts after
// the handshake and each attempt is told to onTlsOutcome (TLS reporting); under an enforcing
// policy a missing STARTTLS or a failed check defers (4.7.0, 4.7.5).
// A hostile server: the client counts the replies it is owed; any byte that arrives when none
// is owed (a reply nobody waits for, on a busy or an idle pooled connection), a malformed
// line, or a reply over its bounds (protocol/reply-reader.ts) closes the connection, and the
// transaction in flight on it fails transiently as 421 4.5.0.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates, type TLSSocket } from 'node:tls';
import { notDelivered, type DeliveryRequest, type RecipientResult, type TlsAuth, type TlsPolicy } from './types.js';
import type { TlsOutcome } from './tls-outcome.js';
import { verifyPeer } from './tls-verify.js';
import { tlsFallbackAllowed } from './tls-fallback.js';
import { replyRecord } from './types.js';
import type { Recipient, ReplyRecord } from '../queue/types.js';
import { dotStuff } from '../protocol/dot-stuff.js';
import { encodeXtext } from '../protocol/address.js';
import { MAX_REPLY_BYTES, MAX_REPLY_LINE_BYTES, MAX_REPLY_LINES, ReplyReader, type SmtpReply } from '../protocol/reply-reader.js';
import { noCapabilities, parseCapabilities, type Capabilities } from '../protocol/capabilities.js';
import { failure, success, type Result } from '../lib/result.js';
import type { SmtpCredentials } from '../config/smtp-credentials.js';

export type { SmtpReply } from '../protocol/reply-reader.js';
export type { Capabilities } from '../protocol/capabilities.js';

export type SmtpProtocol = 'smtp' | 'lmtp';

const CRLF = Buffer.from('\r\n');

/** RFC 5321 §4.5.3.2 (connectMs and tlsMs are ours: the RFC has no figure for them). */
export interface SmtpTimeouts {
  connectMs: number;
  /** Initial 220 greeting: 5 min. */
  greetingMs: number;
  /** EHLO/HELO/LHLO, STARTTLS, MAIL, RCPT, RSET, QUIT: 5 min. */
  commandMs: number;
  /** DATA initiation (the 354): 2 min. */
  dataInitMs: number;
  /** Each data block: a write that does not drain in this time fails: 3 min. */
  dataBlockMs: number;
  /** The reply after the final ".": 10 min. */
  finalMs: number;
  /** TLS handshake after STARTTLS. */
  tlsMs: number;
  /**
   * One transaction as a whole, from RSET or MAIL to the last reply to the data: 30 min (ours:
   * the RFC bounds each wait, not the sum). Each reply restarts its own timer, so without it a
   * server answering each of 100 recipients just in time holds a transaction for hours. Past it
   * the connection is closed and the recipients still unanswered are deferred 4.4.2.
   */
  transactionMs: number;
}

export const DEFAULT_TIMEOUTS: Readonly<SmtpTimeouts> = Object.freeze({
  connectMs: 30_000,
  greetingMs: 300_000,
  commandMs: 300_000,
  dataInitMs: 120_000,
  dataBlockMs: 180_000,
  finalMs: 600_000,
  tlsMs: 30_000,
  transactionMs: 1_800_000,
});

export interface SmtpConnectionOptions {
  host: string;
  port: number;
  protocol: SmtpProtocol;
  /** The name we give in EHLO/HELO/LHLO. */
  heloName: string;
  tlsPolicy: TlsPolicy;
  /** Destination key, recorded in every ReplyRecord. */
  destination: string;
  /** The local address to bind (an egress source of the shaping file); the system's choice when absent. */
  localAddress?: string;
  /** The checked address to connect to (MX hosts); `host` is then only a name for logs and TLS. */
  address?: string;
  /** SNI and the name verified when tlsPolicy is 'required' or 'implicit' (default: host). */
  servername?: string;
  /**
   * Only for tlsPolicy 'required' and 'implicit': verify the peer's certificate (default true).
   * 'opportunistic' never verifies (RFC 7435: unauthenticated encryption beats plaintext).
   */
  rejectUnauthorized?: boolean;
  timeouts?: Partial<SmtpTimeouts>;
  /** The destination's TLS policy (MTA-STS, DANE, or none found): checked and reported. */
  tlsAuth?: TlsAuth;
  /** Told of each TLS attempt made under tlsAuth (RFC 8460 counts them). */
  onTlsOutcome?: (o: TlsOutcome) => void;
  /** false: ignore PIPELINING when offered (a shaping rule). */
  pipelining?: boolean;
  /** false: ignore CHUNKING when offered (a shaping rule); a BINARYMIME message then cannot go there. */
  chunking?: boolean;
  /** Authenticate with these after TLS (only over TLS whose certificate verified). */
  auth?: SmtpCredentials;
  /** Certificates trusted besides Node's roots for verified TLS (PEM; embedders and tests). */
  ca?: readonly string[];
  /**
   * Opportunistic TLS's fallback to clear, obeyed only where tlsFallbackAllowed() says so:
   * 'retry' connects once more in clear after a failed handshake; 'clear' does not try
   * STARTTLS (the host's TLS failed lately).
   */
  plaintext?: 'retry' | 'clear';
}

/** Why a connection is in clear though TLS was wanted: its handshake failed just now ('retry'), or lately ('clear'). */
export type TlsFallbackKind = 'retry' | 'clear';

export type OpenResult = Result<SmtpConnection, ReplyRecord>;

/** The command a ReplyRecord names: the verb whose reply (or failure) decided the outcome. */
export type SmtpCommand = 'CONNECT' | 'EHLO' | 'HELO' | 'LHLO' | 'STARTTLS' | 'AUTH' | 'RSET' | 'MAIL' | 'RCPT' | 'DATA' | 'BDAT' | 'END-OF-DATA' | 'QUIT';

/** A transport-level failure (network error, timeout, closed); turned into a transient record. */
class LinkError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LinkError';
  }
}

/**
 * The peer broke the protocol: once it is out of step, no reply on the connection can be tied
 * to a command, so the connection is closed. Recorded as 421 (we close the channel, as
 * RFC 5321 §3.8 has a server do when it cannot go on; the circuit breaker counts it as a
 * connection failure) with 4.5.0 (RFC 3463 §3.6: other or undefined protocol status),
 * transient, naming the command whose reply was being read or had just been read.
 */
class ProtocolError extends LinkError {
  readonly command: SmtpCommand;
  constructor(message: string, command: SmtpCommand) {
    super(message);
    this.name = 'ProtocolError';
    this.command = command;
  }
}

const PROTOCOL_ERROR_CODE = 421;
const PROTOCOL_ERROR_ENHANCED = '4.5.0';

interface Waiter {
  resolve(r: SmtpReply): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout | null;
  timeoutMs: number;
}

export class SmtpConnection {
  readonly host: string;
  readonly port: number;
  readonly protocol: SmtpProtocol;
  readonly #opts: SmtpConnectionOptions;
  readonly #t: SmtpTimeouts;
  #sock: Socket | TLSSocket;
  readonly #reader = new ReplyReader();
  /** Replies read before anyone asked for them (bounded by #owed: at most one per command sent). */
  #replies: SmtpReply[] = [];
  #waiters: Waiter[] = [];
  /**
   * The replies the peer owes, by command, in order: one per command sent (the greeting
   * first; for LMTP's end of data, one per accepted recipient). Bytes arriving while it is
   * empty are a protocol error; this is also what keeps an idle pooled connection from
   * reading anything (see #onData).
   */
  #owed: SmtpCommand[] = ['CONNECT'];
  /** The command whose reply came last (names an unsolicited reply). */
  #answered: SmtpCommand = 'CONNECT';
  #dead: LinkError | null = null;
  #needsRset = false;
  #secure = false;
  #caps: Capabilities = noCapabilities();
  #messages = 0;
  #onClose: (() => void) | null = null;
  #greeting: SmtpReply | null = null;
  #verified = false;
  #fallback: TlsFallbackKind | null = null;
  #tlsFailure: string | null = null;

  private constructor(sock: Socket, opts: SmtpConnectionOptions, t: SmtpTimeouts) {
    this.host = opts.host;
    this.port = opts.port;
    this.protocol = opts.protocol;
    this.#opts = opts;
    this.#t = t;
    this.#sock = sock;
    this.#attach(sock);
  }

  /** Connect, read the greeting, EHLO/LHLO, STARTTLS by policy. Never rejects. */
  static async open(opts: SmtpConnectionOptions): Promise<OpenResult> {
    const t: SmtpTimeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    // Every failure to open is transient, even a 5xx greeting or EHLO reply: the message was
    // never offered, and the scheduler retries (or the next MX host is tried).
    const fail = (cmd: SmtpCommand, text: string, r?: SmtpReply, enhanced?: string): OpenResult => {
      const reply = replyRecord(r?.code, r?.enhanced ?? enhanced, r ? r.text : text, cmd, opts.destination);
      reply.transient = true;
      return failure(reply);
    };
    const failProtocol = (e: ProtocolError): OpenResult => failure(protocolRecord(e, opts.host, opts.port, opts.destination));
    let sock: Socket;
    try {
      sock = await connectSocket(opts.address ?? opts.host, opts.port, t.connectMs, opts.localAddress);
    } catch (err) {
      return fail('CONNECT', `${opts.host}:${opts.port}: ${(err as Error).message}`);
    }
    // The retry in clear goes to this very address, not to another answer for the name.
    const remote = opts.address ?? sock.remoteAddress;
    const fallback = opts.plaintext !== undefined && tlsFallbackAllowed(opts) ? opts.plaintext : null;
    const c = new SmtpConnection(sock, opts, t);
    // Opening is bounded as a whole like a transaction (greeting, EHLO, STARTTLS, EHLO, AUTH:
    // each step's timer restarts at the next).
    const opening = setTimeout(() => c.#kill(new LinkError(`connection not ready after ${t.transactionMs} ms`)), t.transactionMs);
    let step: SmtpCommand = 'CONNECT';
    /** From STARTTLS's 220 to the EHLO reply over TLS: a link failure here is TLS failing. */
    let inTls = false;
    try {
      // RFC 8314 §3.3: TLS from the first byte, the certificate verified as under 'required';
      // the greeting comes inside it.
      if (opts.tlsPolicy === 'implicit') {
        await c.#upgrade();
        if (opts.rejectUnauthorized !== false) c.#verified = true;
      }
      const g = await c.#read(t.greetingMs);
      c.#greeting = g;
      if (g.code !== 220) {
        c.destroy();
        return fail('CONNECT', '', g);
      }
      step = opts.protocol === 'lmtp' ? 'LHLO' : 'EHLO';
      let r = await c.#hello();
      if (r.code !== 250) {
        c.destroy();
        return fail(step, '', r);
      }
      const auth = opts.tlsAuth;
      const report = (result: TlsOutcome['result']): void => {
        if (!auth || !opts.onTlsOutcome) return;
        const policy: TlsOutcome['policy'] = { type: auth.type };
        if (auth.strings) policy.strings = auth.strings;
        if (auth.mxHosts) policy.mxHosts = auth.mxHosts;
        if (auth.type === 'tlsa') policy.strings = (auth.tlsa?.[opts.host] ?? []).map((t) => `${opts.host}. IN TLSA ${t.usage} ${t.selector} ${t.matching} ${t.data}`);
        const o: TlsOutcome = { policyDomain: auth.policyDomain, policy, mxHost: opts.host, result, at: Date.now() };
        if (opts.address !== undefined) o.receivingIp = opts.address;
        opts.onTlsOutcome(o);
      };
      // Held in clear: no STARTTLS, and no report (the failure that held it was reported).
      if (fallback === 'clear') c.#fallback = 'clear';
      else if (opts.tlsPolicy === 'opportunistic' || opts.tlsPolicy === 'required') {
        step = 'STARTTLS';
        if (!c.#caps.starttls) {
          report({ failure: 'starttls-not-supported', detail: `${opts.host} does not offer STARTTLS` });
          if (opts.tlsPolicy === 'required') {
            await c.quit();
            return fail('STARTTLS', `${opts.host}:${opts.port} does not offer STARTTLS and TLS is required`, undefined, '4.7.0');
          }
        } else {
          r = await c.#command('STARTTLS', t.commandMs);
          if (r.code !== 220) {
            report({ failure: 'starttls-not-supported', detail: `STARTTLS answered ${r.code}` });
            // A refused STARTTLS (454 and the like) is not a handshake failure: go on in clear
            // under 'opportunistic'; under 'required' fail transiently (RFC 3207 §4).
            if (opts.tlsPolicy === 'required') {
              await c.quit();
              return fail('STARTTLS', '', r);
            }
          } else {
            inTls = true;
            try {
              await c.#upgrade();
            } catch (err) {
              report({ failure: 'validation-failure', detail: (err as Error).message.slice(0, 200) });
              throw err;
            }
            if (auth && auth.type !== 'no-policy-found') {
              const v = verifyPeer(c.#sock as TLSSocket, opts.host, auth);
              report(v.ok ? 'success' : { failure: v.failure, detail: v.detail });
              if (v.ok) c.#verified = true;
              else if (auth.enforce) {
                c.destroy();
                const what = auth.type === 'sts' ? 'MTA-STS' : 'DANE';
                return fail('STARTTLS', `${opts.host}:${opts.port}: ${v.detail} (${what} policy of ${auth.policyDomain}; not sent)`, undefined, '4.7.5');
              }
            } else {
              report('success');
              // A route's 'required' verifies the certificate unless told not to.
              if (opts.tlsPolicy === 'required' && opts.rejectUnauthorized !== false) c.#verified = true;
            }
            step = opts.protocol === 'lmtp' ? 'LHLO' : 'EHLO';
            r = await c.#hello();
            inTls = false;
            if (r.code !== 250) {
              c.destroy();
              return fail(step, '', r);
            }
          }
        }
      }
      if (opts.auth !== undefined) {
        step = 'AUTH';
        const refused = await c.#authenticate(opts.auth);
        if (refused !== null) {
          await c.quit();
          return failure(refused);
        }
      }
    } catch (err) {
      c.destroy();
      if (err instanceof ProtocolError) return failProtocol(err);
      const failed = fail(step, `${opts.host}:${opts.port}: ${(err as Error).message}`);
      if (inTls && fallback === 'retry') return SmtpConnection.#retryInClear(opts, remote, failed);
      return failed;
    } finally {
      clearTimeout(opening);
    }
    // Broken after its last awaited reply (e.g. replies kept coming after EHLO's).
    if (c.#dead instanceof ProtocolError) return failProtocol(c.#dead);
    return success(c);
  }

  /**
   * Once, after a failed handshake: the same address in clear ('clear' never retries, so this
   * cannot loop). Its connection is the result; if it fails too, the TLS failure is, with why.
   */
  static async #retryInClear(opts: SmtpConnectionOptions, address: string | undefined, failed: OpenResult): Promise<OpenResult> {
    if (failed.ok) return failed;
    const again = await SmtpConnection.open({ ...opts, ...(address !== undefined ? { address } : {}), plaintext: 'clear' });
    if (again.ok) {
      again.value.#fallback = 'retry';
      again.value.#tlsFailure = failed.error.text;
      return again;
    }
    failed.error.text += `; then in clear: ${again.error.text.slice(0, 300)}`;
    return failed;
  }

  get capabilities(): Readonly<Capabilities> {
    return this.#caps;
  }
  get secure(): boolean {
    return this.#secure;
  }
  /** TLS with the peer authenticated: a policy's check passed, or 'required' with the certificate verified. */
  get verified(): boolean {
    return this.#secure && this.#verified;
  }
  /** In clear though TLS was wanted: 'retry' (its handshake failed just now), 'clear' (lately); null otherwise. */
  get tlsFallback(): TlsFallbackKind | null {
    return this.#fallback;
  }
  /** With tlsFallback 'retry': the failure of the TLS attempt this connection replaced. */
  get tlsFailure(): string | null {
    return this.#tlsFailure;
  }
  get greeting(): SmtpReply | null {
    return this.#greeting;
  }
  /** Transactions attempted on this connection. */
  get messages(): number {
    return this.#messages;
  }
  /** Open and in step with the peer (a later send() may still RSET first). */
  get usable(): boolean {
    return this.#dead === null;
  }
  /** Called once when the socket closes (the pool drops an idle connection the peer closed). */
  set onClose(fn: (() => void) | null) {
    this.#onClose = fn;
  }

  /**
   * One transaction. Every recipient of `req` gets a result; a network error or timeout makes
   * every recipient without a final answer transient, and the connection unusable.
   */
  async send(req: DeliveryRequest): Promise<RecipientResult[]> {
    const results = await this.#transaction(req);
    const e = this.#dead;
    if (!(e instanceof ProtocolError)) return results;
    // The peer broke the protocol before this transaction ended: even the replies it gave are
    // not trusted (it is out of step), so every recipient is retried later. The cost: a
    // duplicate for a hostile server that had in fact taken the message.
    const reply = protocolRecord(e, this.host, this.port, this.#opts.destination);
    return req.recipients.map((r) => ({ kind: 'deferred', address: r.address, reply }));
  }

  async #transaction(req: DeliveryRequest): Promise<RecipientResult[]> {
    this.#messages++;
    const dest = this.#opts.destination;
    const rcpts = req.recipients;
    const results: (RecipientResult | undefined)[] = new Array(rcpts.length);
    const local = (enhanced: string, text: string, cmd: SmtpCommand): RecipientResult[] => {
      const rec = replyRecord(undefined, enhanced, text, cmd, dest);
      rec.transient = enhanced.startsWith('4');
      return rcpts.map((r) => notDelivered(r.address, rec));
    };
    if (this.#dead) return local('4.4.2', `connection to ${this.host}:${this.port} lost: ${this.#dead.message}`, 'CONNECT');
    // Checks before anything is sent: we never downgrade or truncate.
    const m = req.message;
    const caps = this.#caps;
    // RFC 8689 §4.2.1: a REQUIRETLS message goes only over verified TLS to a server that offers
    // REQUIRETLS; §5: otherwise it is returned (5.7.30), never sent.
    if (m.tlsRequired === 'yes') {
      // TLS failed on this host: transient, as the failed handshake would have been; 451 and
      // MAIL, so the message keeps its own retry time (the destination works for other mail).
      if (this.#fallback !== null) {
        const rec = replyRecord(451, '4.7.0', `REQUIRETLS: TLS with ${this.host} failed${this.#tlsFailure ? ` (${this.#tlsFailure})` : ' lately'}; not sent`, 'MAIL', dest);
        return rcpts.map((r) => notDelivered(r.address, rec));
      }
      if (!this.verified) return local('5.7.30', `REQUIRETLS: the TLS session with ${this.host} is not verified (no MTA-STS, DANE or verified route); not sent`, 'MAIL');
      if (!caps.requireTls) return local('5.7.30', `REQUIRETLS: ${this.host} does not offer REQUIRETLS; not sent`, 'MAIL');
    }
    if (m.smtputf8 && !caps.smtputf8) return local('5.6.7', `${this.host} does not offer SMTPUTF8 and the message needs it`, 'MAIL');
    if (m.bodyType === '8BITMIME' && !caps.eightBitMime) return local('5.6.3', `${this.host} does not offer 8BITMIME and the message is 8-bit (no downgrade)`, 'MAIL');
    const binary = m.bodyType === 'BINARYMIME';
    if (binary && !(caps.binaryMime && caps.chunking)) return local('5.6.3', `${this.host} does not offer BINARYMIME and CHUNKING and the message is binary`, 'MAIL');
    // BDAT (RFC 3030) whenever an SMTP server offers CHUNKING: the body goes as it is, with no
    // dot-stuffing pass, and it is the path Exchange prefers. LMTP keeps DATA unless the body
    // is binary: its servers are local and DATA's per-recipient replies are what they test.
    const useBdat = binary || (caps.chunking && this.protocol === 'smtp');
    if (caps.size !== undefined && caps.size > 0 && req.body.length > caps.size) {
      return local('5.3.4', `message of ${req.body.length} bytes exceeds ${this.host}'s SIZE ${caps.size}`, 'MAIL');
    }
    const rec = (r: SmtpReply, cmd: SmtpCommand): RecipientResult['reply'] => replyRecord(r.code, r.enhanced, r.text, cmd, dest);
    const settle = (i: number, r: SmtpReply, cmd: SmtpCommand): void => {
      const reply = rec(r, cmd);
      // Only the reply to the data delivers. A 2xx/3xx settling a recipient at MAIL, RCPT or
      // DATA is a reply that fits no rule (250 to DATA, 252 to RCPT): no delivery, and not a
      // refusal either, so try later rather than bounce.
      const ok = (cmd === 'END-OF-DATA' || cmd === 'BDAT') && r.code >= 200 && r.code < 300;
      if (!ok && r.code < 400) reply.transient = true;
      const address = rcpts[i]!.address;
      results[i] = ok ? { kind: 'delivered', address, reply } : notDelivered(address, reply);
    };
    const fillAll = (r: SmtpReply, cmd: SmtpCommand, only?: number[]): void => {
      for (const i of only ?? rcpts.keys()) if (results[i] === undefined) settle(i, r, cmd);
    };
    let stage: SmtpCommand = 'RSET';
    const deadline = setTimeout(() => this.#kill(new LinkError(`transaction not finished after ${this.#t.transactionMs} ms`)), this.#t.transactionMs);
    try {
      if (this.#needsRset) {
        const r = await this.#command('RSET', this.#t.commandMs);
        if (r.code !== 250) throw new LinkError(`RSET answered ${r.code} ${r.text}`);
        this.#needsRset = false;
      }
      const mail = this.#mailCommand(req);
      const rcptLines = rcpts.map((r) => this.#rcptCommand(r));
      const dataLine = useBdat ? null : 'DATA';
      let mailReply: SmtpReply;
      const rcptReplies: SmtpReply[] = [];
      let dataReply: SmtpReply | null = null;
      this.#needsRset = true; // until the transaction ends cleanly
      if (caps.pipelining) {
        // RFC 2920: MAIL, every RCPT and DATA in one write; replies come back in order.
        const lines = [mail, ...rcptLines];
        if (dataLine) lines.push(dataLine);
        stage = 'MAIL';
        const owed: SmtpCommand[] = ['MAIL', ...rcptLines.map((): SmtpCommand => 'RCPT')];
        if (dataLine) owed.push('DATA');
        this.#write(lines.join('\r\n') + '\r\n', owed);
        mailReply = await this.#read(this.#t.commandMs);
        stage = 'RCPT';
        for (let i = 0; i < rcptLines.length; i++) rcptReplies.push(await this.#read(this.#t.commandMs));
        stage = 'DATA';
        if (dataLine) dataReply = await this.#read(this.#t.dataInitMs);
      } else {
        stage = 'MAIL';
        mailReply = await this.#command(mail, this.#t.commandMs);
        if (mailReply.code === 250) {
          stage = 'RCPT';
          for (const line of rcptLines) rcptReplies.push(await this.#command(line, this.#t.commandMs));
          if (dataLine && rcptReplies.some((r) => r.code === 250 || r.code === 251)) {
            stage = 'DATA';
            dataReply = await this.#command(dataLine, this.#t.dataInitMs);
          }
        }
      }
      if (mailReply.code !== 250) {
        fillAll(mailReply, 'MAIL');
        // A refused MAIL opens no transaction; with pipelining a 354 may still have come back.
        if (dataReply?.code === 354) await this.#endData(Buffer.alloc(0));
        this.#needsRset = dataReply?.code === 354;
        return results as RecipientResult[];
      }
      const accepted: number[] = [];
      rcptReplies.forEach((r, i) => {
        if (r.code === 250 || r.code === 251) accepted.push(i);
        else settle(i, r, 'RCPT');
      });
      if (useBdat) {
        let bdatOk = true;
        if (accepted.length > 0) {
          stage = 'BDAT';
          if (this.#dead) throw this.#dead;
          this.#expect('BDAT', this.#finalReplyCount(accepted.length));
          // A text body gets the final CRLF DATA would give it, so both paths deliver the same
          // bytes; a binary one goes exactly as it is.
          const b = req.body;
          const tail = !binary && !(b.length >= 2 && b[b.length - 2] === 0x0d && b[b.length - 1] === 0x0a) ? CRLF : null;
          this.#sock.cork();
          this.#sock.write(`BDAT ${b.length + (tail?.length ?? 0)} LAST\r\n`);
          this.#sock.write(b);
          if (tail) this.#sock.write(tail);
          this.#sock.uncork();
          await this.#drain();
          await this.#finalReplies(
            accepted,
            (i, r, cmd) => {
              if (r.code < 200 || r.code >= 300) bdatOk = false;
              settle(i, r, cmd);
            },
            'BDAT',
          );
        }
        // After a BDAT refused (or answered 354) the server's state is not known (RFC 1830 §2:
        // "A RSET command must be issued"); the connection's next transaction starts with one.
        this.#needsRset = accepted.length === 0 || !bdatOk;
        return results as RecipientResult[];
      }
      if (dataReply === null) return results as RecipientResult[]; // no recipient accepted; RSET next time
      if (dataReply.code !== 354) {
        fillAll(dataReply, 'DATA', accepted);
        return results as RecipientResult[];
      }
      if (accepted.length === 0) {
        // Pipelined and every RCPT refused, yet the server said 354: end an empty message.
        await this.#endData(Buffer.alloc(0));
        return results as RecipientResult[];
      }
      stage = 'END-OF-DATA';
      this.#writeBody(req.body, accepted.length);
      await this.#drain();
      await this.#finalReplies(accepted, settle, 'END-OF-DATA');
      this.#needsRset = false;
      return results as RecipientResult[];
    } catch (err) {
      const e = err instanceof LinkError ? err : new LinkError((err as Error).message);
      this.#kill(e);
      for (let i = 0; i < rcpts.length; i++) {
        if (results[i] !== undefined) continue;
        const reply = replyRecord(undefined, '4.4.2', `${this.host}:${this.port}: ${e.message}`, stage, dest);
        results[i] = { kind: 'deferred', address: rcpts[i]!.address, reply };
      }
      return results as RecipientResult[];
    } finally {
      clearTimeout(deadline);
    }
  }

  /** QUIT politely (bounded by a short wait), then close. Never rejects. */
  async quit(): Promise<void> {
    if (this.#dead) return;
    try {
      await this.#command('QUIT', Math.min(this.#t.commandMs, 5_000));
    } catch {
      /* the peer may close first */
    }
    this.#kill(new LinkError('closed by us'));
  }

  destroy(): void {
    this.#kill(new LinkError('closed by us'));
  }

  // --- internals ---

  #mailCommand(req: DeliveryRequest): string {
    const m = req.message;
    const caps = this.#caps;
    let s = `MAIL FROM:<${m.sender}>`;
    if (caps.size !== undefined) s += ` SIZE=${req.body.length}`;
    if (m.bodyType === '8BITMIME') s += ' BODY=8BITMIME';
    else if (m.bodyType === 'BINARYMIME') s += ' BODY=BINARYMIME';
    if (m.smtputf8) s += ' SMTPUTF8';
    if (m.tlsRequired === 'yes') s += ' REQUIRETLS';
    if (caps.dsn) {
      if (m.ret) s += ` RET=${m.ret}`;
      if (m.envid) s += ` ENVID=${encodeXtext(m.envid)}`;
    }
    return s;
  }

  #rcptCommand(r: Recipient): string {
    let s = `RCPT TO:<${r.address}>`;
    if (this.#caps.dsn) {
      if (r.notify && r.notify.length > 0) s += ` NOTIFY=${r.notify.join(',')}`;
      if (r.orcpt) {
        const semi = r.orcpt.indexOf(';');
        if (semi > 0) s += ` ORCPT=${r.orcpt.slice(0, semi)};${encodeXtext(r.orcpt.slice(semi + 1))}`;
      }
    }
    return s;
  }

  async #finalReplies(accepted: number[], settle: (i: number, r: SmtpReply, cmd: SmtpCommand) => void, cmd: SmtpCommand): Promise<void> {
    if (this.protocol === 'lmtp') {
      // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
      for (const i of accepted) settle(i, await this.#read(this.#t.finalMs), cmd);
    } else {
      const r = await this.#read(this.#t.finalMs);
      for (const i of accepted) settle(i, r, cmd);
    }
  }

  async #endData(body: Buffer): Promise<void> {
    this.#writeBody(body, 0);
    await this.#drain();
    const n = this.#finalReplyCount(0); // LMTP with no accepted recipient: no replies
    for (let i = 0; i < n; i++) await this.#read(this.#t.finalMs);
  }

  /** Replies to the end of data: one (SMTP), or one per accepted recipient (RFC 2033 §4.2). */
  #finalReplyCount(accepted: number): number {
    return this.protocol === 'lmtp' ? accepted : 1;
  }

  /** The stuffed body as views in one corked burst (no copy of the body), then the ".". */
  #writeBody(body: Buffer, accepted: number): void {
    if (this.#dead) return;
    this.#expect('END-OF-DATA', this.#finalReplyCount(accepted));
    const s = this.#sock;
    s.cork();
    for (const piece of dotStuff(body)) s.write(piece);
    s.uncork();
  }

  /** Wait until the socket's buffer drains, bounded by the data-block timeout. */
  async #drain(): Promise<void> {
    const s = this.#sock;
    if (this.#dead) throw this.#dead;
    if (!s.writableNeedDrain) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        const e = new LinkError(`data block timeout after ${this.#t.dataBlockMs} ms`);
        this.#kill(e);
        reject(e);
      }, this.#t.dataBlockMs);
      const onDrain = (): void => {
        cleanup();
        resolve();
      };
      const onClose = (): void => {
        cleanup();
        reject(this.#dead ?? new LinkError('connection closed'));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        s.off('drain', onDrain);
        s.off('close', onClose);
      };
      s.on('drain', onDrain);
      s.on('close', onClose);
    });
  }

  /** The capabilities offered, less those a shaping rule turned off. */
  #allowed(caps: Capabilities): Capabilities {
    if (this.#opts.pipelining === false) caps = { ...caps, pipelining: false };
    if (this.#opts.chunking === false) caps = { ...caps, chunking: false };
    return caps;
  }

  async #hello(): Promise<SmtpReply> {
    const name = this.#opts.heloName;
    if (this.protocol === 'lmtp') {
      const r = await this.#command(`LHLO ${name}`, this.#t.commandMs);
      if (r.code === 250) this.#caps = this.#allowed(parseCapabilities(r.lines));
      return r;
    }
    const r = await this.#command(`EHLO ${name}`, this.#t.commandMs);
    if (r.code === 250) {
      this.#caps = this.#allowed(parseCapabilities(r.lines));
      return r;
    }
    if (r.code >= 500) {
      // RFC 5321 §3.2: a server that does not know EHLO gets HELO; no extensions then.
      const h = await this.#command(`HELO ${name}`, this.#t.commandMs);
      this.#caps = noCapabilities();
      return h;
    }
    return r;
  }

  /**
   * RFC 4954 with PLAIN (its initial response) or LOGIN; null once the server said 235, else
   * the transient record of why not. A 334 where none fits is answered "*" (cancel, §4).
   */
  async #authenticate(cred: SmtpCredentials): Promise<ReplyRecord | null> {
    const dest = this.#opts.destination;
    const where = `${this.host}:${this.port}`;
    const ours = (text: string): ReplyRecord => {
      const r = replyRecord(undefined, '4.7.0', text, 'AUTH', dest);
      r.transient = true;
      return r;
    };
    if (!this.#secure || (this.#sock as TLSSocket).authorized !== true) return ours(`${where}: not authenticating: the connection is not TLS with a verified certificate`);
    const offered = this.#caps.auth;
    const mech = offered.includes('PLAIN') ? 'PLAIN' : offered.includes('LOGIN') ? 'LOGIN' : null;
    if (mech === null) return ours(`${where} offers no AUTH mechanism postern uses (PLAIN, LOGIN)${offered.length > 0 ? `; it offers ${offered.join(' ')}` : ''}`);
    const b64 = (t: string): string => Buffer.from(t, 'utf8').toString('base64');
    const plain = b64(`\0${cred.user}\0${cred.password}`);
    const secrets = [cred.password, b64(cred.password), plain];
    let r: SmtpReply;
    if (mech === 'PLAIN') r = await this.#authLine(`AUTH PLAIN ${plain}`);
    else {
      r = await this.#authLine('AUTH LOGIN');
      if (r.code === 334) r = await this.#authLine(b64(cred.user));
      if (r.code === 334) r = await this.#authLine(b64(cred.password));
    }
    let last = r;
    if (r.code === 334) last = await this.#authLine('*');
    if (r.code === 235) return null;
    const rec = replyRecord(last.code, last.enhanced, redactSecrets(last.text, secrets), 'AUTH', dest);
    rec.transient = true;
    return rec;
  }

  /** One line of the AUTH exchange; a continuation line is not a verb, so its reply is owed to AUTH. */
  #authLine(line: string): Promise<SmtpReply> {
    this.#write(line + '\r\n', ['AUTH']);
    return this.#read(this.#t.commandMs);
  }

  async #upgrade(): Promise<void> {
    // RFC 3207 §5 / CVE-2011-0411: bytes after the 220 were injected in clear. Nothing is owed
    // after the 220, so #onData has already closed the connection for them; this is the check
    // that does not depend on it.
    if (this.#dead) throw this.#dead;
    if (!this.#reader.idle || this.#replies.length > 0) {
      const e = new ProtocolError('unexpected data after the STARTTLS reply (possible injection)', 'STARTTLS');
      this.#kill(e);
      throw e;
    }
    const plain = this.#sock as Socket;
    this.#detach(plain);
    const required = this.#opts.tlsPolicy === 'required' || this.#opts.tlsPolicy === 'implicit';
    const servername = this.#opts.servername ?? this.host;
    // A policy (MTA-STS, DANE) is checked after the handshake by verifyPeer, which tells the
    // failures apart for TLS reporting; the handshake itself then accepts any certificate.
    const checkedLater = this.#opts.tlsAuth !== undefined && this.#opts.tlsAuth.type !== 'no-policy-found';
    const tls = tlsConnect({
      socket: plain,
      // The name the certificate is verified against. Without it, a host that is an address
      // literal (SNI must be a name, so none is sent) would be checked against "localhost".
      host: servername,
      // SNI must be a name, never an address literal.
      ...(/^[\d.]+$|:/.test(servername) ? {} : { servername }),
      rejectUnauthorized: required && !checkedLater ? this.#opts.rejectUnauthorized !== false : false,
      ...(this.#opts.ca ? { ca: [...rootCertificates, ...this.#opts.ca] } : {}),
      minVersion: 'TLSv1.2',
    });
    this.#sock = tls;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        done();
        reject(new LinkError(`TLS handshake timeout after ${this.#t.tlsMs} ms`));
      }, this.#t.tlsMs);
      const ok = (): void => {
        done();
        resolve();
      };
      const bad = (e: Error): void => {
        done();
        reject(new LinkError(`TLS handshake failed: ${e.message}`));
      };
      const done = (): void => {
        clearTimeout(timer);
        tls.off('secureConnect', ok);
        tls.off('error', bad);
      };
      tls.once('secureConnect', ok);
      tls.once('error', bad);
    });
    this.#secure = true;
    this.#attach(tls);
  }

  #attach(s: Socket): void {
    s.on('data', this.#onData);
    s.on('error', this.#onError);
    s.on('close', this.#onSockClose);
    s.setNoDelay(true);
  }

  #detach(s: Socket): void {
    s.off('data', this.#onData);
    s.off('error', this.#onError);
    s.off('close', this.#onSockClose);
  }

  /*
   * Reading is bounded by what is owed. With nothing owed (an idle pooled connection, or the
   * rest of a chunk after the last owed reply), the first byte closes the connection: it can
   * only start a reply nobody waits for. So an idle connection holds at most the one chunk in
   * hand, and a flood costs one chunk. We do not socket.pause() idle connections instead: a
   * paused net.Socket does not emit 'end' or 'close' for the peer's FIN until it is resumed
   * (Node 20), so a connection the peer closed while idle would sit in the pool and fail the
   * next message; reading and closing on the first byte sees the close at once.
   */
  #onData = (chunk: Buffer): void => {
    if (this.#owed.length === 0) {
      this.#violation(`unexpected data after the ${this.#answered} reply (nothing was waiting for a reply)`, this.#answered);
      return;
    }
    const reader = this.#reader;
    reader.push(chunk);
    for (;;) {
      const r = reader.next();
      const cmd = this.#owed[0] ?? this.#answered;
      switch (r.kind) {
        case 'partial':
          return;
        case 'reply':
          this.#reply(r.reply);
          if (this.#dead) return;
          if (this.#owed.length === 0 && !reader.idle) {
            this.#violation(`unexpected data after the ${this.#answered} reply (nothing was waiting for a reply)`, this.#answered);
            return;
          }
          continue;
        case 'malformed':
          this.#violation(`malformed reply line: ${JSON.stringify(r.line)}`, cmd);
          return;
        case 'line-too-long':
          this.#violation(`reply line longer than ${MAX_REPLY_LINE_BYTES} bytes`, cmd);
          return;
        case 'too-many-lines':
          this.#violation(`reply has more than ${MAX_REPLY_LINES} lines`, cmd);
          return;
        case 'reply-too-long':
          this.#violation(`reply longer than ${MAX_REPLY_BYTES} bytes`, cmd);
          return;
      }
    }
  };

  #violation(message: string, command: SmtpCommand): void {
    this.#kill(new ProtocolError(message, command));
  }

  #reply(r: SmtpReply): void {
    this.#answered = this.#owed.shift()!;
    const w = this.#waiters.shift();
    if (w) {
      if (w.timer) clearTimeout(w.timer);
      w.resolve(r);
      // The next waiter's clock starts now that its turn has come.
      this.#arm();
    } else this.#replies.push(r);
  }

  #onError = (err: Error): void => {
    this.#kill(new LinkError(err.message));
  };

  #onSockClose = (): void => {
    this.#kill(new LinkError('connection closed by the peer'));
  };

  #kill(e: LinkError): void {
    if (this.#dead) return;
    this.#dead = e;
    // Replies read ahead from a peer out of step answer nothing.
    if (e instanceof ProtocolError) this.#replies = [];
    for (const w of this.#waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(e);
    }
    this.#sock.destroy();
    const cb = this.#onClose;
    this.#onClose = null;
    cb?.();
  }

  /** Note the replies owed for what is about to be written (before any can arrive). */
  #expect(cmd: SmtpCommand, n = 1): void {
    for (let i = 0; i < n; i++) this.#owed.push(cmd);
  }

  /** Write command lines; `owed` names each reply they call for. */
  #write(s: string, owed: SmtpCommand[]): void {
    if (this.#dead) return;
    for (const c of owed) this.#expect(c);
    this.#sock.write(s);
  }

  /** One command line ("MAIL FROM:<…>"): its verb names the reply it is owed. */
  #command(line: string, timeoutMs: number): Promise<SmtpReply> {
    const sp = line.indexOf(' ');
    this.#write(line + '\r\n', [(sp < 0 ? line : line.slice(0, sp)) as SmtpCommand]);
    return this.#read(timeoutMs);
  }

  /** The next reply, in order. Only the first waiter's timer runs (see #arm). */
  #read(timeoutMs: number): Promise<SmtpReply> {
    const r = this.#replies.shift();
    if (r) return Promise.resolve(r);
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ resolve, reject, timer: null, timeoutMs });
      this.#arm();
    });
  }

  #arm(): void {
    const w = this.#waiters[0];
    if (!w || w.timer) return;
    w.timer = setTimeout(() => this.#kill(new LinkError(`timeout after ${w.timeoutMs} ms waiting for a reply`)), w.timeoutMs);
  }
}

/** `text` with every secret (and its base64) replaced by "***": a server may echo what it was sent. */
function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first: the base64 of PLAIN's response may end with the password's own base64.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (s.length >= 3) out = out.split(s).join('***');
  return out;
}

function protocolRecord(e: ProtocolError, host: string, port: number, destination: string): ReplyRecord {
  return replyRecord(PROTOCOL_ERROR_CODE, PROTOCOL_ERROR_ENHANCED, `${host}:${port}: protocol error: ${e.message}; connection closed`, e.command, destination);
}

function connectSocket(host: string, port: number, timeoutMs: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port, ...(localAddress !== undefined ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect timeout after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onErr);
      resolve(s);
    });
    const onErr = (e: Error): void => {
      clearTimeout(timer);
      reject(e);
    };
    s.once('error', onErr);
  });
}
