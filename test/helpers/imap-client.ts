// A small IMAP4rev1 client (RFC 3501) for the mailbox-server interop tests: tagged commands one
// at a time, untagged responses collected with their literals ({n} followed by n bytes) kept as
// Buffers, so a FETCH BODY[] can be compared byte for byte with what was delivered. Bounded:
// a literal of at most 16 MiB, a line of at most 64 KiB, a deadline per command.
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

export interface ImapResponse {
  /** The response text, each literal replaced by `{n}` as it was announced. */
  text: string;
  literals: Buffer[];
}

export interface ImapResult {
  status: 'OK' | 'NO' | 'BAD';
  /** The tagged line after the status. */
  text: string;
  /** The tagged line after the tag: the status and its text as the server wrote them. */
  line: string;
  untagged: ImapResponse[];
}

const MAX_LITERAL = 16 * 1024 * 1024;
const MAX_LINE = 64 * 1024;

export class ImapClient {
  readonly #socket: Socket;
  #buf = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | null = null;
  #tag = 0;
  greeting = '';

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number, timeoutMs = 5000): Promise<ImapClient> {
    const socket = connect({ port, host: '127.0.0.1' });
    await once(socket, 'connect');
    const c = new ImapClient(socket);
    const g = await c.#readResponse(Date.now() + timeoutMs);
    c.greeting = g.text;
    if (!/^\* (OK|PREAUTH)/.test(g.text)) throw new Error(`IMAP greeting: ${g.text}`);
    return c;
  }

  /** Wait until `n` bytes (or a CRLF when n is -1) are buffered; false when the peer closed. */
  async #fill(deadline: number, n: number): Promise<void> {
    for (;;) {
      if (n >= 0 ? this.#buf.length >= n : this.#buf.indexOf('\r\n') >= 0) return;
      if (n < 0 && this.#buf.length > MAX_LINE) throw new Error('IMAP line too long');
      if (this.#closed) throw new Error(`IMAP connection closed (buffered: ${this.#buf.toString('latin1').slice(0, 200)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`IMAP timeout (buffered: ${this.#buf.toString('latin1').slice(0, 200)})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          this.#wake = null;
          resolve();
        };
      });
    }
  }

  /** One response: a line, and while it ends with a literal announcement, the literal and the rest. */
  async #readResponse(deadline: number): Promise<ImapResponse> {
    let text = '';
    const literals: Buffer[] = [];
    for (;;) {
      await this.#fill(deadline, -1);
      const nl = this.#buf.indexOf('\r\n');
      const line = this.#buf.subarray(0, nl).toString('utf8');
      this.#buf = this.#buf.subarray(nl + 2);
      text += line;
      const lit = /\{(\d+)\+?\}$/.exec(line);
      if (!lit) return { text, literals };
      const size = Number(lit[1]);
      if (size > MAX_LITERAL) throw new Error(`IMAP literal of ${size} bytes`);
      await this.#fill(deadline, size);
      literals.push(Buffer.from(this.#buf.subarray(0, size)));
      this.#buf = this.#buf.subarray(size);
    }
  }

  /** Send one command (without tag) and read until its tagged reply. */
  async command(cmd: string, timeoutMs = 10_000): Promise<ImapResult> {
    const tag = `t${++this.#tag}`;
    this.#socket.write(`${tag} ${cmd}\r\n`);
    const deadline = Date.now() + timeoutMs;
    const untagged: ImapResponse[] = [];
    for (;;) {
      const r = await this.#readResponse(deadline);
      if (r.text.startsWith(`${tag} `)) {
        const m = /^\S+ (OK|NO|BAD) ?(.*)$/.exec(r.text);
        if (!m) throw new Error(`IMAP tagged reply: ${r.text}`);
        return { status: m[1] as ImapResult['status'], text: m[2]!, line: r.text.slice(tag.length + 1), untagged };
      }
      untagged.push(r);
    }
  }

  /** A command that must succeed; its untagged responses. */
  async ok(cmd: string, timeoutMs?: number): Promise<ImapResponse[]> {
    const r = await this.command(cmd, timeoutMs);
    if (r.status !== 'OK') throw new Error(`IMAP ${cmd.split(' ')[0]}: ${r.status} ${r.text}`);
    return r.untagged;
  }

  async login(user: string, password: string): Promise<void> {
    await this.ok(`LOGIN ${quote(user)} ${quote(password)}`);
  }

  async logout(): Promise<void> {
    if (!this.#closed) await this.command('LOGOUT').catch(() => undefined);
    this.#socket.destroy();
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** An IMAP quoted string (RFC 3501 §4.3); the tests' values never hold CR or LF. */
export function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}
