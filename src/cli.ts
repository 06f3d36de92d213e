#!/usr/bin/env node
// The `postern` command line: start, config, user add, queue, sendmail, spam, help, version.
// Every command parses its arguments with node:util parseArgs (cli/args.ts; sendmail has its
// own parser, cli/sendmail-args.ts) and exits with a sysexits status (cli/exit-codes.ts).
// Only the light modules load up front; each command imports what it needs, so a short-lived
// command (`spam classify` in a pipeline, `config`, `sendmail` from cron) does not pay for
// loading the MTA (LMDB, pino, Piscina, undici, mailauth).
import { readFileSync } from 'node:fs';
import { PosternError } from './errors.js';
import { parseCommand, str, usageError, type CommandSpec } from './cli/args.js';
import { ENV_FILE_OPTION, ENV_FILE_USAGE, cliConfig } from './cli/cli-config.js';
import { EX, exitCodeOf } from './cli/exit-codes.js';

const USAGE = `usage: postern <command> [options]       (postern <command> --help for its options)

  start                          run the node (SMTP and HTTP listeners, queue, delivery)
  config [--json|--markdown]     print the effective configuration (every POSTERN_* variable)
  user add NAME --file FILE      read a password on stdin and add/replace NAME in the AUTH users file
  queue                          the queue's counts; queue list, show, flush, hold, release,
                                 delete, bounce, check (postern queue --help)
  sendmail [options] [RCPT...]   the sendmail interface: submit the message on stdin to the
                                 local node (also installed as postern-sendmail)
  spam train|classify|eval       the spam classifier (postern spam --help)
  help [COMMAND]                 this text, or a command's
  version                        print the version

Every setting is a POSTERN_* environment variable; see \`postern config\`.
exit status (sysexits): 0 ok, 1 the command's own failure, 64 usage, 65 bad input data,
69 the node is not running, 75 temporary failure (retry), 78 configuration`;

/** Ids the node replaced may still make after a takeover starts (Queue.fenceSeq). */
const TAKEOVER_SEQ_GAP = 1_000_000;
/** How long a successor may take to start (open the queue, load filters, listen). */
const TAKEOVER_READY_MS = 120_000;

const START: CommandSpec = {
  usage: `usage: postern start [--env-file FILE]

  run the node: SMTP and HTTP listeners, queue, delivery, filters; JSON logs on stdout.
  SIGTERM/SIGINT shut down gracefully, SIGHUP reloads the users file and the recipient map,
  SIGUSR2 starts the new version on the same listening sockets, then drains and exits.
  Listening sockets passed as LISTEN_FDS (systemd socket activation; names smtp, smtps,
  http) are used instead of binding.
  The data dir (POSTERN_DATA_DIR) is created when missing.
  ${ENV_FILE_USAGE}`,
  options: ENV_FILE_OPTION,
};

const CONFIG: CommandSpec = {
  usage: `usage: postern config [--json | --markdown] [--env-file FILE]

  print the effective configuration, after every check \`start\` makes (the files the settings
  name included); a bad value exits 78 naming every bad variable
  --json        as JSON (numbers, durations in ms, booleans)
  --markdown    the table of every setting, its default and doc (docs/configuration.md's)
  ${ENV_FILE_USAGE}`,
  options: { ...ENV_FILE_OPTION, json: { type: 'boolean' }, markdown: { type: 'boolean' } },
};

const USER: CommandSpec = {
  usage: `usage: postern user add NAME --file FILE

  read a password (one line) on stdin and add or replace NAME (scrypt hash) in the AUTH users
  file FILE (POSTERN_AUTH_USERS); the node reloads it on SIGHUP`,
  options: { file: { type: 'string' } },
  positionals: { min: 2, max: 2, name: 'add NAME' },
};

const VERSION: CommandSpec = { usage: 'usage: postern version\n\n  print the version' };
const HELP: CommandSpec = { usage: 'usage: postern help [COMMAND]\n\n  the list of commands, or the usage of COMMAND', positionals: { min: 0, max: 1 } };

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function cmdStart(argv: string[]): Promise<number | null> {
  const p = parseCommand(argv, START);
  if (p === null) return EX.OK;
  // Read (and removed, so nothing started later inherits them) before anything else.
  const [{ takeListenFds }, { takeTakeoverPair, startSuccessor }] = await Promise.all([import('./takeover/listen-fds.js'), import('./takeover/successor.js')]);
  const listenFds = takeListenFds(process.env, process.pid);
  const pair = takeTakeoverPair(process.env);
  const config = await cliConfig(p.values);
  const [{ createLogger }, { startNode }] = await Promise.all([import('./log/logger.js'), import('./main.js')]);
  const log = createLogger(config.logLevel as 'info');
  const node = await startNode(config, log, { listenFds, ...(pair ? { deliveryAfter: pair.replacedExited } : {}) });
  pair?.ready();
  let stopping = false;
  let handingOver = false;
  // A takeover's successor hands over again only once the node it replaced has exited: a third
  // process would start delivering while that one may still deliver.
  let replacedGone = pair === null;
  void pair?.replacedExited.then(() => (replacedGone = true));
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'signal received');
    node.close().then(
      () => log.flush(() => process.exit(0)),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        log.flush(() => process.exit(1));
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    node.reloadRecipients();
    void node.reloadUsers().catch((err: unknown) => log.error({ err }, 'users reload failed'));
  });
  // SIGUSR2: start the new version of this command on the same sockets, then drain and exit
  // (docs/operations.md, "Upgrades without refusing a connection").
  process.on('SIGUSR2', () => {
    if (stopping || handingOver || !replacedGone) return log.warn({ stopping, handingOver, replacedGone }, 'SIGUSR2 ignored: stopping, handing over, or the node replaced is still draining');
    handingOver = true;
    log.info('SIGUSR2: starting the new process on the listening sockets');
    void (async () => {
      let fenced = false;
      try {
        const fds = node.listenerFds();
        node.queue.fenceSeq(TAKEOVER_SEQ_GAP);
        fenced = true;
        const next = await startSuccessor({ fds, readyTimeoutMs: TAKEOVER_READY_MS });
        log.info({ successor: next.pid }, 'the new process is ready: this one stops accepting, drains and exits');
        stop('SIGUSR2');
      } catch (err) {
        if (fenced) node.queue.unfenceSeq();
        handingOver = false;
        log.error({ err }, 'takeover failed: this node carries on');
      }
    })();
  });
  return null; // runs until a signal
}

async function cmdConfig(argv: string[]): Promise<number> {
  const p = parseCommand(argv, CONFIG);
  if (p === null) return EX.OK;
  if (p.values.json === true && p.values.markdown === true) throw usageError('--json or --markdown, not both', CONFIG.usage);
  const { describeConfig, configMarkdown } = await import('./config/load.js');
  if (p.values.markdown === true) {
    console.log(configMarkdown());
    return EX.OK;
  }
  const config = await cliConfig(p.values);
  // Everything `start` checks, the files the settings name included.
  await (await import('./config/resources.js')).loadResources(config);
  const rows = describeConfig(config);
  if (p.values.json === true) {
    const out: Record<string, string | number | boolean | null> = {};
    for (const r of rows) {
      const v = config[r.setting.key];
      // Counts, sizes, durations (ms) and flags as JSON numbers and booleans; the rest as written.
      out[r.setting.key] = v === null && r.setting.type.kind === 'port' ? null : ['int', 'bytes', 'duration', 'port', 'bool'].includes(r.setting.type.kind) && (typeof v === 'number' || typeof v === 'boolean') ? v : r.value;
    }
    console.log(JSON.stringify(out, null, 2));
  } else {
    const w = Math.max(...rows.map((r) => r.env.length));
    for (const r of rows) console.log(`${r.env.padEnd(w)}  ${r.value}`);
  }
  return EX.OK;
}

async function cmdUser(argv: string[]): Promise<number> {
  const p = parseCommand(argv, USER);
  if (p === null) return EX.OK;
  const [verb, name] = p.positionals as [string, string];
  const file = str(p.values, 'file');
  if (verb !== 'add') throw usageError(`unknown user command ${JSON.stringify(verb)}`, USER.usage);
  if (file === undefined) throw usageError('missing --file FILE', USER.usage);
  const input = await readStdin();
  const password = input.replace(/\r?\n$/, '');
  if (password.includes('\n')) throw new PosternError('PST_ERR_USAGE', 'the password must be a single line on stdin');
  const { addUser } = await import('./auth/users.js');
  const what = await addUser(file, name, password);
  console.log(`${what} user ${name} in ${file}`);
  return EX.OK;
}

/** Each command's usage, for `postern help COMMAND` (the commands print it on --help too). */
async function helpOf(cmd: string): Promise<string | undefined> {
  switch (cmd) {
    case 'start': return START.usage;
    case 'config': return CONFIG.usage;
    case 'user': return USER.usage;
    case 'version': return VERSION.usage;
    case 'help': return HELP.usage;
    case 'queue': return (await import('./cli/queue-command.js')).QUEUE_USAGE;
    case 'sendmail': return (await import('./cli/sendmail-args.js')).SENDMAIL_USAGE;
    case 'spam': return (await import('./filter/spam/cli.js')).SPAM_USAGE;
    default: return undefined;
  }
}

async function cmdHelp(argv: string[]): Promise<number> {
  const p = parseCommand(argv, HELP);
  if (p === null) return EX.OK;
  const cmd = p.positionals[0];
  if (cmd === undefined) {
    console.log(USAGE);
    return EX.OK;
  }
  const text = await helpOf(cmd);
  if (text === undefined) throw usageError(`unknown command ${JSON.stringify(cmd)}`, USAGE);
  console.log(text);
  return EX.OK;
}

/** The exit status, or null for `start` (which runs until a signal). */
async function main(argv: string[]): Promise<number | null> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'start':
      return cmdStart(rest);
    case 'config':
      return cmdConfig(rest);
    case 'user':
      return cmdUser(rest);
    case 'queue':
      return (await import('./cli/queue-command.js')).queueCommand(rest);
    case 'sendmail':
      return (await import('./cli/sendmail.js')).sendmailCommand(rest);
    case 'spam':
      return (await import('./filter/spam/cli.js')).spamCommand(rest);
    case 'version':
    case '--version': {
      if (parseCommand(rest, VERSION) === null) return EX.OK;
      console.log(version());
      return EX.OK;
    }
    case 'help':
      return cmdHelp(rest);
    case '--help':
    case '-h':
      console.log(USAGE);
      return EX.OK;
    case undefined:
      console.error(USAGE);
      return EX.USAGE;
    default:
      throw usageError(`unknown command ${JSON.stringify(cmd)}`, USAGE);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== null) process.exitCode = code;
  },
  (err: unknown) => {
    const code = exitCodeOf(err);
    console.error(err instanceof PosternError ? `postern: ${err.message}` : err);
    process.exit(code);
  },
);
