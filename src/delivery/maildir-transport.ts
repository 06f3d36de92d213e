// Local delivery into Maildir folders (D. J. Bernstein, "Using maildir format",
// cr.yp.to/proto/maildir.html): write to tmp/<unique>, fsync, rename into new/, fsync new/ —
// the rename is the commit point, so a reader (Dovecot, Courier) never sees a partial file.
// Recipient names become path components only through a conservative whitelist mapping
// (mailboxPath, shared with RCPT); anything else is a permanent 5.1.3 (RFC 3463 "bad
// destination mailbox syntax"). A missing mailbox folder is made only when `mayCreate` allows,
// else 5.1.1 ("bad destination mailbox address").
import { constants as fsc } from 'node:fs';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import type { DeliveryRequest, Destination, RecipientResult, Transport } from './types.js';
import { replyRecord } from './types.js';
import { mailboxPath } from '../protocol/mailbox-path.js';

export { mailboxPath, type MailboxPathResult } from '../protocol/mailbox-path.js';

/*
 * Layout under the configured root (one Maildir per mailbox, no Maildir++ subfolders):
 *
 *   <root>/
 *     example.org/            ← domain: IDNA A-label (punycode), lower-case
 *       alice/                ← local part: lower-case, "+extension" removed
 *         tmp/  1700000000.M123456P4242Q7.mx1   (only while being written)
 *         new/  1700000000.M123456P4242Q7.mx1   (delivered, unread)
 *         cur/                                  (the MUA/IMAP server moves mail here)
 *
 * Mapping decisions (conservative: a name either maps to one plain, portable file name or the
 * recipient is refused; we never "clean up" a name into a different mailbox):
 *  - Local part: ASCII only. UTF-8 local parts (RFC 6531) are refused with 5.1.3: there is no
 *    canonical on-disk form (NFC vs NFD — macOS normalises, ext4 does not — and Unicode case
 *    folding is locale-dependent), so two spellings of one address could land in two folders,
 *    or two addresses in one. Quoted local parts are refused for the same reason.
 *  - "+extension" (sub-addressing, Postfix recipient_delimiter=+) is dropped: alice+news@ is
 *    delivered to alice/. Delivered-To keeps the full address so filters (Sieve) can use it.
 *  - After lower-casing, a local part must match [a-z0-9][a-z0-9._-]{0,63} with no "..":
 *    no leading dot (".." or ".hidden" and Maildir++ folder names start with a dot), no '/',
 *    NUL or other control bytes, and it fits any file system's name limit.
 *  - Domain: only [A-Za-z0-9.-] and non-ASCII, converted with domainToASCII (IDNA, so UTF-8
 *    domains work and get one spelling), lower-cased, each label [a-z0-9-]{1,63} not starting/ending with '-', at most 253
 *    characters. Address literals ([192.0.2.1]) and the empty domain (<postmaster>) are refused.
 *  - Finally the resolved path must lie strictly inside the resolved root (belt and braces).
 * Symlinks: the tmp file is opened O_CREAT|O_EXCL, which never follows a planted symlink.
 * Folders that are themselves symlinks (an admin's choice) are followed.
 *
 * By default the message bytes are written as given (CRLF line ends, as queued), which Dovecot
 * reads correctly, and the two added headers use CRLF to match. `lineEnds: 'lf'` writes the
 * Unix form instead (each CRLF becomes LF; a lone CR stays), as Courier, Exim and maildrop
 * write Maildirs: Courier-IMAP serves a file by putting a CR before every LF, so CRLF files
 * reach its clients as CR CR LF. Either way a reader that serves lines as CRLF gives the client
 * the bytes as received, so DKIM signatures still verify.
 */

export interface MaildirTransportOptions {
  /** The host name in unique file names (default os.hostname()). */
  hostname?: string;
  /** File mode of delivered messages (default 0o600) and folders (default 0o700). */
  fileMode?: number;
  dirMode?: number;
  /** Line ends of the files written: as received (crlf, default) or Unix (lf). */
  lineEnds?: 'crlf' | 'lf';
  /**
   * Whether a missing mailbox folder <root>/<domain>/<local>/ may be created for `address`
   * (default: always). main.ts answers from POSTERN_RECIPIENTS or POSTERN_MAILDIR_CREATE; a
   * recipient it refuses gets 550 5.1.1 unless the folder already exists, so no message from
   * the network can make a mailbox the operator did not configure.
   */
  mayCreate?: (address: string) => boolean;
}

/** Maildir spec: '/' and ':' in the host name are written as \057 and \072. */
function safeHostname(h: string): string {
  return h.replace(/\//g, '\\057').replace(/:/g, '\\072') || 'localhost';
}

let counter = 0;

/** `<seconds>.M<microseconds>P<pid>Q<counter>.<host>` (the Maildir spec's modern unique name). */
export function uniqueName(host: string, nowMs: number = Date.now()): string {
  const sec = Math.floor(nowMs / 1000);
  // Date.now() has millisecond resolution; performance.now() fills in the microseconds. Only
  // the counter (per process), pid (per host) and host together guarantee uniqueness.
  const micro = (nowMs % 1000) * 1000 + (Math.floor(performance.now() * 1000) % 1000);
  counter = (counter + 1) >>> 0;
  return `${sec}.M${micro}P${process.pid}Q${counter}.${host}`;
}

async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Strip anything that could end a header line; addresses come from the SMTP parser anyway. */
function headerValue(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

export class MaildirTransport implements Transport {
  readonly #host: string;
  readonly #fileMode: number;
  readonly #dirMode: number;
  readonly #mayCreate: (address: string) => boolean;
  readonly #eol: string;

  constructor(opts: MaildirTransportOptions = {}) {
    this.#host = safeHostname(opts.hostname ?? hostname());
    this.#fileMode = opts.fileMode ?? 0o600;
    this.#dirMode = opts.dirMode ?? 0o700;
    this.#mayCreate = opts.mayCreate ?? (() => true);
    this.#eol = opts.lineEnds === 'lf' ? '\n' : '\r\n';
  }

  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    assert.equal(dest.kind, 'maildir', 'MaildirTransport got a non-maildir destination');
    const root = (dest as Extract<Destination, { kind: 'maildir' }>).root;
    const where = dest.key;
    // The root must already exist: creating it would, e.g., fill the root file system when
    // the mail volume failed to mount. A missing root is a transient local problem.
    try {
      const st = await stat(root);
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (err) {
      const r = replyRecord(451, '4.3.0', `maildir root unavailable: ${errCode(err)}`, undefined, where);
      return req.recipients.map((rc) => ({ kind: 'deferred', address: rc.address, reply: r }));
    }
    return Promise.all(req.recipients.map((rc) => this.#deliverOne(root, where, rc.address, req)));
  }

  async #deliverOne(root: string, where: string, address: string, req: DeliveryRequest): Promise<RecipientResult> {
    const path = mailboxPath(root, address);
    if (!path.ok) {
      return { kind: 'failed', address, reply: replyRecord(553, '5.1.3', `mailbox name not allowed: ${path.error}`, undefined, where) };
    }
    const mp = path.value;
    if (!this.#mayCreate(address) && !(await isDirectory(mp.dir))) {
      return { kind: 'failed', address, reply: replyRecord(550, '5.1.1', `mailbox does not exist: ${mp.domain}/${mp.local}`, undefined, where) };
    }
    const name = uniqueName(this.#host);
    const tmpPath = join(mp.dir, 'tmp', name);
    let created = false;
    try {
      let first: string | undefined;
      for (const sub of ['tmp', 'new', 'cur']) {
        const made = await mkdir(join(mp.dir, sub), { recursive: true, mode: this.#dirMode });
        if (made !== undefined && (first === undefined || made.length < first.length)) first = made;
      }
      if (first !== undefined) {
        // New folders are durable only once their parents' entries are: fsync from the
        // parent of the first folder created down to the mailbox folder. (Known gap: a
        // concurrent delivery that finds the folders already made by us does not wait for
        // these fsyncs; it only matters for a crash during a mailbox's very first delivery.)
        const dirs: string[] = [];
        for (let d = mp.dir; d.length >= dirname(first).length; d = dirname(d)) {
          dirs.push(d);
          if (d === dirname(first)) break;
        }
        for (const d of dirs) await fsyncDir(d);
      }
      const eol = this.#eol;
      const head = Buffer.from(`Return-Path: <${headerValue(req.message.sender)}>${eol}Delivered-To: ${headerValue(address)}${eol}`, 'utf8');
      // 'wx' = O_CREAT|O_EXCL: fails on an existing name and never follows a symlink.
      const fh = await open(tmpPath, 'wx', this.#fileMode);
      created = true;
      try {
        await writeAll(fh, head);
        if (eol === '\r\n') await writeAll(fh, req.body);
        // One copy of the body rather than a write per line.
        else await writeAll(fh, Buffer.concat(crlfToLf(req.body)));
        await fh.sync();
      } finally {
        await fh.close();
      }
      const newPath = join(mp.dir, 'new', name);
      await rename(tmpPath, newPath);
      created = false;
      await fsyncDir(join(mp.dir, 'new'));
      return { kind: 'delivered', address, reply: replyRecord(250, '2.0.0', `delivered to maildir ${mp.domain}/${mp.local}/new/${name}`, undefined, where) };
    } catch (err) {
      if (created) await unlink(tmpPath).catch(() => undefined);
      return { kind: 'deferred', address, reply: replyRecord(451, '4.3.0', `maildir write failed: ${errCode(err)}`, undefined, where) };
    }
  }

  async close(): Promise<void> {
    // No pooled resources.
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** The message as views without the CR of each CRLF (a lone CR is kept), in order. */
export function crlfToLf(body: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = body.indexOf(0x0d); i >= 0 && i < body.length - 1; i = body.indexOf(0x0d, i + 1)) {
    if (body[i + 1] !== 0x0a) continue;
    parts.push(body.subarray(from, i));
    from = i + 1;
  }
  parts.push(body.subarray(from));
  return parts;
}

/** FileHandle.write may write less than asked; loop until done. */
async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, null);
    off += bytesWritten;
  }
}

function errCode(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  return typeof e?.code === 'string' ? e.code : String(e?.message ?? err);
}
