#!/usr/bin/env node
// The `postern` command line: start, config, user add, queue. Usage errors exit 2 with a
// message; configuration errors exit 78 (EX_CONFIG) naming every bad variable at once.
// Only the light modules load up front; each command imports what it needs, so a short-lived
// command (`spam classify` in a pipeline, `config`, `version`) does not pay for loading the MTA
// (LMDB, pino, Piscina, undici, mailauth).
import { readFileSync } from 'node:fs';
import { PosternError } from './errors.js';

const USAGE = `usage: postern <command>

  start                          run the node (SMTP listeners + queue), logs JSON on stdout
  config [--json|--markdown]     print the effective configuration (every POSTERN_* variable)
  user add NAME --file FILE      read a password on stdin and add/replace NAME in the AUTH users file
  queue [--json]                 print the queue's counts by state, priority and domain
  queue check [--repair] [--json]  verify records, indexes and counters (exit 1 on problems);
                                 --repair rebuilds them and sets corrupt records aside
  spam train SPAM_DIR HAM_DIR --model FILE | spam classify --model FILE | spam eval [--seed N]
  version                        print the version

Every setting is a POSTERN_* environment variable; see \`postern config\`.`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function cmdStart(): Promise<void> {
  const { loadConfig } = await import('./config/load.js');
  const config = loadConfig();
  const [{ createLogger }, { startNode }] = await Promise.all([import('./log/logger.js'), import('./main.js')]);
  const log = createLogger(config.logLevel as 'info');
  const node = await startNode(config, log);
  let stopping = false;
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
}

async function cmdConfig(args: string[]): Promise<void> {
  const { loadConfig, describeConfig, configMarkdown } = await import('./config/load.js');
  if (args.includes('--markdown')) {
    console.log(configMarkdown());
    return;
  }
  const config = loadConfig();
  // Everything `start` checks, the files the settings name included.
  await (await import('./config/resources.js')).loadResources(config);
  const rows = describeConfig(config);
  if (args.includes('--json')) {
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
}

async function cmdUser(args: string[]): Promise<void> {
  const [verb, name] = args;
  const fi = args.indexOf('--file');
  const file = fi >= 0 ? args[fi + 1] : undefined;
  if (verb !== 'add' || !name || name.startsWith('--') || !file) throw new PosternError('PST_ERR_USAGE', 'usage: postern user add NAME --file FILE  (password on stdin)');
  const input = await readStdin();
  const password = input.replace(/\r?\n$/, '');
  if (password.includes('\n')) throw new PosternError('PST_ERR_USAGE', 'the password must be a single line on stdin');
  const { addUser } = await import('./auth/users.js');
  const what = await addUser(file, name, password);
  console.log(`${what} user ${name} in ${file}`);
}

async function cmdQueue(args: string[]): Promise<void> {
  if (args[0] === 'check') return cmdQueueCheck(args.slice(1));
  const { loadConfig } = await import('./config/load.js');
  const config = loadConfig();
  const { Queue } = await import('./queue/store.js');
  const queue = Queue.open({ path: config.dataDir, mapSizeBytes: config.queueMapBytes });
  try {
    const c = queue.counts();
    const corrupt = queue.corruptCount();
    if (args.includes('--json')) {
      console.log(JSON.stringify({ ...c, corruptRecords: corrupt }, null, 2));
      return;
    }
    console.log(`messages: ${c.total}`);
    console.log(`by state: ready ${c.byState.ready}, scheduled ${c.byState.scheduled}, leased ${c.byState.leased}, held ${c.byState.held}`);
    console.log(`by priority: urgent ${c.byPriority.urgent}, normal ${c.byPriority.normal}, bulk ${c.byPriority.bulk}`);
    const domains = Object.entries(c.byDomain).sort((a, b) => b[1] - a[1]);
    if (domains.length > 0) {
      console.log('pending recipients by domain:');
      for (const [d, n] of domains.slice(0, 50)) console.log(`  ${String(n).padStart(8)}  ${d}`);
      if (domains.length > 50) console.log(`  … and ${domains.length - 50} more domains`);
    }
    if (corrupt > 0) console.log(`corrupt records set aside: ${corrupt} (postern queue check lists them)`);
  } finally {
    await queue.close();
  }
}

/**
 * `postern queue check`: every discrepancy between the records and the indexes, counters and
 * seq (src/queue/check-queue.ts), for a stopped node's data dir. Read-only without --repair.
 * Exit 1 when problems exist (with --repair: when some are left after it).
 */
async function cmdQueueCheck(args: string[]): Promise<void> {
  const unknown = args.filter((a) => a !== '--repair' && a !== '--json');
  if (unknown.length > 0) throw new PosternError('PST_ERR_USAGE', `usage: postern queue check [--repair] [--json]  (not ${JSON.stringify(unknown[0])})`);
  const repair = args.includes('--repair');
  const { loadConfig } = await import('./config/load.js');
  const config = loadConfig();
  const { checkQueueFolder } = await import('./queue/check-queue.js');
  const r = checkQueueFolder(config.dataDir, { repair, mapSizeBytes: config.queueMapBytes });
  process.exitCode = r.remaining > 0 ? 1 : 0;
  if (args.includes('--json')) {
    console.log(JSON.stringify({ path: config.dataDir, ok: r.remaining === 0, ...r }, null, 2));
    return;
  }
  // Keys and reasons come from a damaged file: no control character reaches the terminal.
  // eslint-disable-next-line no-control-regex
  const safe = (text: string): string => text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  console.log(`queue ${config.dataDir}: ${r.records} records`);
  for (const p of r.problems) console.log(`problem: ${safe(p.detail)}`);
  const n = r.problems.length;
  if (n === 0) console.log('no problems');
  else if (!repair) console.log(`${n} problem${n === 1 ? '' : 's'}; postern queue check --repair fixes them (stop the node first)`);
  else if (r.remaining === 0) console.log(`${n} problem${n === 1 ? '' : 's'} repaired`);
  else console.log(`${n} problem${n === 1 ? '' : 's'}, ${r.remaining} left after the repair`);
  if (r.corrupt.length > 0) {
    console.log(`set aside as corrupt (sub-database 'corrupt'): ${r.corrupt.length}`);
    for (const c of r.corrupt) console.log(`  ${safe(c.id)}  ${Number.isFinite(c.at) ? new Date(c.at).toISOString() : '?'}  record ${c.recordBytes} B, body ${c.bodyBytes} B  ${safe(c.reason)}`);
  }
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'start':
      return cmdStart();
    case 'config':
      return cmdConfig(rest);
    case 'user':
      return cmdUser(rest);
    case 'queue':
      return cmdQueue(rest);
    case 'spam':
      process.exitCode = await (await import('./filter/spam/cli.js')).spamCommand(rest);
      return;
    case 'version':
    case '--version':
      console.log(version());
      return;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new PosternError('PST_ERR_USAGE', `unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof PosternError && err.code === 'PST_ERR_CONFIG_INVALID') { // a ConfigError
    console.error(`postern: ${err.message}`);
    process.exit(78);
  }
  if (err instanceof PosternError) {
    console.error(`postern: ${err.message}`);
    process.exit(err.code === 'PST_ERR_USAGE' ? 2 : 1);
  }
  console.error(err);
  process.exit(1);
});
