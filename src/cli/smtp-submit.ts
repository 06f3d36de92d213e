// The submission client of `postern sendmail`: one message to the local node over SMTP, all
// or nothing. Every recipient must be accepted before DATA, or the transaction is reset and
// nothing is queued, so a caller that retries (exit 75) never sends a copy twice to those that
// were accepted. Outcomes are values; every wait is bounded. Replies are read with the
// delivery client's bounded reader (protocol/reply-reader.ts).
import { connect, type Socket } from 'node:net';
import { encodeXtext } from '../protocol/address.js';
import { parseCapabilities, type Capabilities } from '../protocol/capabilities.js';
import { dotStuff } from '../protocol/dot-stuff.js';
import { ReplyReader, type SmtpReply } from '../protocol/reply-reader.js';
import { PosternError } from '../errors.js';

export interface Submission {
  sender: string;
  recipients: string[];
  message: Buffer;
  eightBit: boolean;
  smtputf8: boolean;
  notify?: string;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
}

/**
 * 'sent': queued for every recipient. 'down': no connection (nothing listens). 'refused': a
 * reply other than the one expected, at `stage`; nothing was queued (transient: a 4xx).
 * 'lost': the connection failed mid-way; nothing is known to be queued.
 */
export type SubmitResult =
  | { kind: 'sent'; reply: SmtpReply }
  | { kind: 'down'; why: string }
  | { kind: 'refused'; stage: 'greeting' | 'EHLO' | 'MAIL' | 'RCPT' | 'DATA' | 'END-OF-DATA'; reply: SmtpReply; recipient?: string }
  | { kind: 'lost'; why: string };

export interface SubmitOptions {
  host: string;
  port: number;
  heloName: string;
  /** Each reply (and the connection) within this; the final reply after the data too. */
  timeoutMs: number;
  /** The dialogue, line by line (-v). */
  trace?: (line: string) => void;
}

class Link {
  readonly #sock: Socket;
  readonly #reader = new ReplyReader();
  readonly #waiting: ((r: SmtpReply | Error) => void)[] = [];
  readonly #replies: (SmtpReply | Error)[] = [];
  readonly #timeoutMs: number;
  readonly #trace: ((line: string) => void) | undefined;
  #failed: Error | null = null;

  constructor(sock: Socket, timeoutMs: number, trace?: (line: string) => void) {
    this.#sock = sock;
    this.#timeoutMs = timeoutMs;
    this.#trace = trace;
    sock.on('data', (chunk: Buffer) => {
      this.#reader.push(chunk);
      for (;;) {
        const r = this.#reader.next();
        if (r.kind === 'partial') return;
        if (r.kind !== 'reply') return this.#fail(new PosternError('PST_ERR_CLI_NODE_DOWN', `the node's reply is not SMTP (${r.kind})`));
        for (const l of r.reply.lines) this.#trace?.(`<<< ${r.reply.code} ${l}`);
        this.#deliver(r.reply);
      }
    });
    sock.on('error', (err) => this.#fail(err));
    sock.on('close', () => this.#fail(new PosternError('PST_ERR_CLI_NODE_DOWN', 'the node closed the connection')));
  }

  #deliver(r: SmtpReply | Error): void {
    const w = this.#waiting.shift();
    if (w) w(r);
    else this.#replies.push(r);
  }

  #fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = err;
    this.#sock.destroy();
    while (this.#waiting.length > 0) this.#waiting.shift()!(err);
  }

  read(): Promise<SmtpReply> {
    const ready = this.#replies.shift();
    if (ready !== undefined) return ready instanceof Error ? Promise.reject(ready) : Promise.resolve(ready);
    if (this.#failed) return Promise.reject(this.#failed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.#fail(new PosternError('PST_ERR_CLI_NODE_DOWN', `no reply from the node in ${this.#timeoutMs} ms`)), this.#timeoutMs);
      this.#waiting.push((r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      });
    });
  }

  write(line: string): void {
    this.#trace?.(`>>> ${line}`);
    this.#sock.write(line + '\r\n');
  }

  async command(line: string): Promise<SmtpReply> {
    this.write(line);
    return this.read();
  }

  writeBody(pieces: Buffer[]): void {
    this.#trace?.(`>>> (message, ${pieces.reduce((n, p) => n + p.length, 0)} bytes with the final ".")`);
    this.#sock.cork();
    for (const p of pieces) this.#sock.write(p);
    this.#sock.uncork();
  }

  close(): void {
    this.#sock.end();
    this.#sock.destroySoon();
  }
}

function open(o: SubmitOptions): Promise<Socket | Error> {
  return new Promise((resolve) => {
    const sock = connect({ host: o.host, port: o.port });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(new PosternError('PST_ERR_CLI_NODE_DOWN', `no connection in ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(new PosternError('PST_ERR_CLI_NODE_DOWN', err.code ?? err.message));
    });
  });
}

function mailCommand(s: Submission, caps: Capabilities): string {
  let line = `MAIL FROM:<${s.sender}>`;
  if (caps.size !== undefined) line += ` SIZE=${s.message.length}`;
  if (s.eightBit && caps.eightBitMime) line += ' BODY=8BITMIME';
  if (s.smtputf8 && caps.smtputf8) line += ' SMTPUTF8';
  if (caps.dsn && s.ret) line += ` RET=${s.ret}`;
  if (caps.dsn && s.envid) line += ` ENVID=${encodeXtext(s.envid)}`;
  return line;
}

export async function submit(s: Submission, o: SubmitOptions): Promise<SubmitResult> {
  const sock = await open(o);
  if (sock instanceof Error) return { kind: 'down', why: `${o.host}:${o.port}: ${sock.message}` };
  const link = new Link(sock, o.timeoutMs, o.trace);
  try {
    const greeting = await link.read();
    if (greeting.code !== 220) return { kind: 'refused', stage: 'greeting', reply: greeting };
    const ehlo = await link.command(`EHLO ${o.heloName}`);
    if (ehlo.code !== 250) return { kind: 'refused', stage: 'EHLO', reply: ehlo };
    const caps: Capabilities = parseCapabilities(ehlo.lines);
    const mail = await link.command(mailCommand(s, caps));
    if (mail.code !== 250) return { kind: 'refused', stage: 'MAIL', reply: mail };
    for (const r of s.recipients) {
      const notify = caps.dsn && s.notify ? ` NOTIFY=${s.notify}` : '';
      const rcpt = await link.command(`RCPT TO:<${r}>${notify}`);
      if (rcpt.code !== 250 && rcpt.code !== 251) {
        // All or nothing: reset, so no recipient accepted so far gets the message.
        await link.command('RSET').catch(() => undefined);
        return { kind: 'refused', stage: 'RCPT', reply: rcpt, recipient: r };
      }
    }
    const data = await link.command('DATA');
    if (data.code !== 354) return { kind: 'refused', stage: 'DATA', reply: data };
    link.writeBody(dotStuff(s.message));
    const done = await link.read();
    if (done.code !== 250) return { kind: 'refused', stage: 'END-OF-DATA', reply: done };
    await link.command('QUIT').catch(() => undefined);
    return { kind: 'sent', reply: done };
  } catch (err) {
    return { kind: 'lost', why: (err as Error).message };
  } finally {
    link.close();
  }
}
