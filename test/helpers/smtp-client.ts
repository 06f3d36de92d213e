// A raw SMTP client for conformance tests: writes exact bytes and reads whole replies
// (multi-line aware), so tests can pipeline, send broken line ends, and upgrade to TLS.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';

export interface SmtpReply {
  code: number;
  lines: string[];
  text: string;
}

export class RawClient {
  socket: Socket | TLSSocket;
  #buf = '';
  #replies: SmtpReply[] = [];
  #waiters: Array<() => void> = [];
  closed = false;

  constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.#listen(socket);
  }

  static async connect(port: number, opts: { tls?: boolean; host?: string; localAddress?: string } = {}): Promise<RawClient> {
    const host = opts.host ?? '127.0.0.1';
    const local = opts.localAddress ? { localAddress: opts.localAddress } : {};
    const socket = opts.tls ? tlsConnect({ port, host, rejectUnauthorized: false, ...local }) : netConnect({ port, host, ...local });
    await once(socket, opts.tls ? 'secureConnect' : 'connect');
    return new RawClient(socket);
  }

  #listen(socket: Socket): void {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.#buf += d;
      this.#parse();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => {});
  }

  #parse(): void {
    for (;;) {
      const lines: string[] = [];
      let pos = 0;
      let done = false;
      while (true) {
        const nl = this.#buf.indexOf('\r\n', pos);
        if (nl < 0) break;
        const line = this.#buf.slice(pos, nl);
        lines.push(line);
        pos = nl + 2;
        if (line.length < 4 || line[3] !== '-') {
          done = true;
          break;
        }
      }
      if (!done) return;
      this.#buf = this.#buf.slice(pos);
      const code = Number(lines[0]!.slice(0, 3));
      this.#replies.push({ code, lines: lines.map((l) => l.slice(4)), text: lines.map((l) => l.slice(4)).join('\n') });
      this.#wake();
    }
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Next reply; rejects after timeoutMs or if the connection closes first. */
  async read(timeoutMs = 5000): Promise<SmtpReply> {
    const deadline = Date.now() + timeoutMs;
    while (this.#replies.length === 0) {
      if (this.closed) throw new Error('connection closed before a reply');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timeout waiting for a reply');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#replies.shift()!;
  }

  async readN(n: number, timeoutMs = 5000): Promise<SmtpReply[]> {
    const out: SmtpReply[] = [];
    for (let i = 0; i < n; i++) out.push(await this.read(timeoutMs));
    return out;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async cmd(line: string, timeoutMs?: number): Promise<SmtpReply> {
    this.write(line + '\r\n');
    return this.read(timeoutMs);
  }

  /** Wait for the server to close the connection. */
  async closedByServer(timeoutMs = 5000): Promise<boolean> {
    if (this.closed) return true;
    await Promise.race([once(this.socket, 'close'), new Promise((r) => setTimeout(r, timeoutMs))]);
    return this.closed;
  }

  /** Replace the socket by a TLS socket over it (after a 220 to STARTTLS). */
  async startTls(): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tlsConnect({ socket: plain, rejectUnauthorized: false });
    await once(secure, 'secureConnect');
    this.socket = secure;
    this.#buf = '';
    this.#listen(secure);
  }

  pending(): number {
    return this.#replies.length;
  }

  end(): void {
    this.socket.destroy();
  }
}

/**
 * A session up to an accepted recipient: connected, greeting read, EHLO, MAIL and RCPT each
 * answered 250 (else it throws), closed when the test ends. For tests that then send DATA or
 * BDAT their own way (dribbled, broken, hostile).
 */
export async function openTransaction(t: { after(fn: () => void): void } | null, port: number, o: { helo: string; from: string; to: string }): Promise<RawClient> {
  const c = await RawClient.connect(port);
  if (t !== null) t.after(() => c.end());
  for (const [cmd, want] of [[null, 220], [`EHLO ${o.helo}`, 250], [`MAIL FROM:<${o.from}>`, 250], [`RCPT TO:<${o.to}>`, 250]] as const) {
    const r = cmd === null ? await c.read() : await c.cmd(cmd);
    if (r.code !== want) {
      c.end();
      throw new Error(`${cmd ?? 'greeting'}: expected ${want}, got ${r.code} ${r.text}`);
    }
  }
  return c;
}

/**
 * Send one message in its own session and return its queue id: LF or CRLF text, dot-stuffed
 * here as a client must (RFC 5321 §4.5.2). Throws (an assertion) on any non-2xx/354 reply.
 */
export async function sendMessage(port: number, from: string, rcpts: string[], body: string, helo = 'test.example', mailParams = ''): Promise<string> {
  const c = await RawClient.connect(port);
  const expect = (r: SmtpReply, code: number, what: string) => {
    if (r.code !== code) throw new Error(`${what}: expected ${code}, got ${r.code} ${r.text}`);
  };
  try {
    await c.read();
    await c.cmd(`EHLO ${helo}`);
    expect(await c.cmd(`MAIL FROM:<${from}>${mailParams === '' ? '' : ` ${mailParams}`}`), 250, 'MAIL');
    for (const r of rcpts) expect(await c.cmd(`RCPT TO:<${r}>`), 250, `RCPT ${r}`);
    expect(await c.cmd('DATA'), 354, 'DATA');
    const r = await c.cmd(body.replace(/\r?\n$/, '').replace(/^\./gm, '..').replace(/\r?\n/g, '\r\n') + '\r\n.', 10_000);
    expect(r, 250, 'end of data');
    // postern's queue id; another server's (Exim: "OK id=…") reply text as it is.
    return /queued as (\S+)/.exec(r.text)?.[1] ?? r.text;
  } finally {
    c.end();
  }
}
