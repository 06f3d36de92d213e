// `postern sendmail` and the `postern-sendmail` bin: the sendmail(1) interface through which
// cron, PHP's mail(), git send-email, logwatch and most Unix software hand mail to the local
// MTA. It reads the message on stdin, completes it (sendmail-message.ts) and submits it to the
// running node over SMTP on loopback (smtp-submit.ts), with sendmail's exit statuses: 0 queued,
// 75 the node is down or said "later" (the caller keeps the message and retries), 65/67 refused
// for good. The input is never dropped silently: any status but 0 means nothing was queued.
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { Config } from '../config/schema.js';
import { PosternError } from '../errors.js';
import { has8bit } from '../http/raw-message.js';
import { EX } from './exit-codes.js';
import { connectHost } from './node-api.js';
import { SENDMAIL_USAGE, parseSendmailArgs, type SendmailArgs } from './sendmail-args.js';
import { InputReader, argumentAddresses, isSubmittable, prepareMessage, qualify } from './sendmail-message.js';
import { submit, type SubmitResult } from './smtp-submit.js';

/** Read when neither -C nor the environment names a file: where a package would install it. */
export const DEFAULT_ENV_FILE = '/etc/postern/postern.env';
/** Each SMTP reply within this (the node answers at once; a stuck one is "try later"). */
const REPLY_TIMEOUT_MS = 120_000;

const say = (text: string): void => void process.stderr.write(`postern-sendmail: ${text}\n`);

async function config(a: SendmailArgs): Promise<Readonly<Config>> {
  const { loadConfig, loadConfigWithFile } = await import('../config/load.js');
  const { readEnvFile } = await import('../config/env-file.js');
  if (a.envFile !== undefined) return loadConfigWithFile(readEnvFile(a.envFile));
  // Run from cron or PHP, the environment has no POSTERN_* settings: the installed file has them.
  if (existsSync(DEFAULT_ENV_FILE)) return loadConfigWithFile(readEnvFile(DEFAULT_ENV_FILE));
  return loadConfig();
}

function defaultSender(host: string): string {
  let user = 'nobody';
  try {
    user = userInfo().username || user;
  } catch {
    // no passwd entry for this uid (a container): keep "nobody"
  }
  return `${user}@${host}`;
}

/** The status for a submission that did not go through, and what to tell the caller. */
function failure(r: Exclude<SubmitResult, { kind: 'sent' }>): { code: number; text: string } {
  if (r.kind === 'down') return { code: EX.TEMPFAIL, text: `the node is not running (${r.why}); nothing was queued, try again later` };
  if (r.kind === 'lost') return { code: EX.TEMPFAIL, text: `connection to the node lost (${r.why}); nothing was queued, try again later` };
  const reply = `${r.reply.code} ${r.reply.enhanced ? r.reply.enhanced + ' ' : ''}${r.reply.text}`;
  const what = r.stage === 'RCPT' ? `recipient <${r.recipient}> refused: ${reply}` : `${r.stage} refused: ${reply}`;
  if (r.reply.code >= 400 && r.reply.code < 500) return { code: EX.TEMPFAIL, text: `${what}; nothing was queued, try again later` };
  if (r.stage === 'RCPT') return { code: EX.NOUSER, text: `${what}; nothing was queued` };
  if (r.stage === 'greeting' || r.stage === 'EHLO') return { code: EX.UNAVAILABLE, text: `${what}; nothing was queued` };
  return { code: EX.DATAERR, text: `${what}; nothing was queued` };
}

function smtpAddress(config: Readonly<Config>): { host: string; port: number } {
  if (config.smtpPort === 0) throw new PosternError('PST_ERR_CONFIG_INVALID', 'POSTERN_SMTP_PORT is 0: the port the node picked is unknown; set it to the node\'s SMTP port');
  return { host: connectHost(config.smtpHost), port: config.smtpPort };
}

/** Read stdin until the input ends (EOF, or a "." line without -i); null when it is too big. */
async function readInput(a: SendmailArgs, maxBytes: number): Promise<Buffer | null> {
  const input = new InputReader(a.ignoreDots, maxBytes);
  for await (const chunk of process.stdin) {
    if (input.push(chunk as Buffer)) break;
  }
  return input.tooBig ? null : input.message();
}

/** -bs: the node's SMTP on stdin/stdout, byte for byte, until either side closes. */
async function smtpOnStdio(config: Readonly<Config>): Promise<number> {
  const { connect } = await import('node:net');
  const { host, port } = smtpAddress(config);
  const sock = connect({ host, port });
  const connected = await new Promise<boolean>((resolve) => {
    sock.once('connect', () => resolve(true));
    sock.once('error', () => resolve(false));
  });
  if (!connected) {
    // The SMTP client on stdin reads a reply: a 421 tells it to try later, as a busy server would.
    process.stdout.write('421 4.3.2 postern: the node is not running, try again later\r\n');
    say(`the node is not running (nothing listens on ${host}:${port})`);
    return EX.TEMPFAIL;
  }
  process.stdin.pipe(sock);
  sock.pipe(process.stdout);
  await new Promise<void>((resolve) => {
    sock.once('close', () => resolve());
    sock.once('error', () => resolve());
  });
  process.stdin.unpipe(sock);
  process.stdin.destroy();
  return EX.OK;
}

export async function sendmailCommand(argv: string[]): Promise<number> {
  const parsed = parseSendmailArgs(argv);
  if (!parsed.ok) {
    say(parsed.error);
    process.stderr.write(SENDMAIL_USAGE + '\n');
    return EX.USAGE;
  }
  const a = parsed.args;
  if (a.help) {
    process.stdout.write(SENDMAIL_USAGE + '\n');
    return EX.OK;
  }
  if (a.mode === 'list') {
    if (a.recipients.length > 0) {
      say('-bp takes no recipients');
      return EX.USAGE;
    }
    const envFile = a.envFile ?? (existsSync(DEFAULT_ENV_FILE) ? DEFAULT_ENV_FILE : undefined);
    const args = ['list', ...(envFile !== undefined ? ['--env-file', envFile] : [])];
    return (await import('./queue-command.js')).queueCommand(args);
  }
  if (!a.extract && a.recipients.length === 0 && a.mode === 'submit') {
    say('no recipients (give them as arguments, or -t to read them from the message)');
    return EX.USAGE;
  }
  const c = await config(a);
  if (a.mode === 'smtp') return smtpOnStdio(c);
  const { host, port } = smtpAddress(c);

  // The whole message is read before connecting: -t needs its headers, and the node's SMTP
  // timeouts must not run while a slow writer is still producing it.
  const raw = await readInput(a, c.maxMessageBytes);
  if (raw === null) {
    say(`the message is larger than POSTERN_MAX_MESSAGE_BYTES (${c.maxMessageBytes}); nothing was queued`);
    return EX.DATAERR;
  }
  if (raw.includes(0)) {
    say('the message contains NUL bytes, which SMTP cannot carry; nothing was queued');
    return EX.DATAERR;
  }
  const sender = a.sender ?? defaultSender(c.hostname);
  const p = prepareMessage(raw, { extract: a.extract, sender, ...(a.fullName !== undefined ? { fullName: a.fullName } : {}), hostname: c.hostname });
  const fromArgs = a.recipients.flatMap((x) => argumentAddresses(x)).map((x) => qualify(x, c.hostname));
  const bad = [...fromArgs, ...p.headerRecipients].find((r) => !isSubmittable(r));
  if (bad !== undefined) {
    say(`${JSON.stringify(bad)} is not an address; nothing was queued`);
    return fromArgs.includes(bad) ? EX.USAGE : EX.DATAERR;
  }
  const seen = new Set<string>();
  const recipients: string[] = [];
  for (const r of [...fromArgs, ...p.headerRecipients]) {
    const k = r.toLowerCase();
    if (!seen.has(k)) {
      seen.add(k);
      recipients.push(r);
    }
  }
  if (recipients.length === 0) {
    say(a.extract ? 'no recipients in To, Cc or Bcc, nor as arguments; nothing was queued' : 'no valid recipient among the arguments');
    return a.extract ? EX.DATAERR : EX.USAGE;
  }
  // eslint-disable-next-line no-control-regex
  const nonAscii = /[^\x00-\x7f]/;
  const r = await submit(
    {
      sender,
      recipients,
      message: p.message,
      eightBit: a.bodyType === '8BITMIME' || has8bit(p.message),
      smtputf8: nonAscii.test(sender) || recipients.some((x) => nonAscii.test(x)),
      ...(a.notify !== undefined ? { notify: a.notify } : {}),
      ...(a.ret !== undefined ? { ret: a.ret } : {}),
      ...(a.envid !== undefined ? { envid: a.envid } : {}),
    },
    { host, port, heloName: c.hostname, timeoutMs: REPLY_TIMEOUT_MS, ...(a.verbose ? { trace: say } : {}) },
  );
  if (r.kind === 'sent') return EX.OK;
  const f = failure(r);
  say(f.text);
  return f.code;
}
