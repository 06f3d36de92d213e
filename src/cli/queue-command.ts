// `postern queue …`: the queue as Postfix's mailq/postqueue/postsuper and KumoMTA's kcli show
// and change it. Read-only commands (the summary, list, show, check) open the data dir
// read-only (queue-reader.ts), beside a running node; commands that change the queue (flush,
// hold, release, delete, bounce) ask the running node over its HTTP API (node-api.ts), since
// only the node writes its data dir. A data dir without a queue is an error, never created.
import type { Config } from '../config/schema.js';
import type { MessageRecord } from '../queue/types.js';
import { PosternError } from '../errors.js';
import { num, parseCommand, str, usageError, type CommandSpec, type Values } from './args.js';
import { ENV_FILE_OPTION, ENV_FILE_USAGE, cliConfig } from './cli-config.js';
import { EX } from './exit-codes.js';
import { apiError, NodeApi, type ApiAnswer } from './node-api.js';
import { safeText } from './safe-text.js';
import { sourceOfDestination } from '../lib/destination-source.js';
import { LIST_STATES, listState, type ListState } from '../queue/list-state.js';

export const QUEUE_USAGE = `usage: postern queue [COMMAND] [--env-file FILE]

  (none) [--json]                   the counts by state, priority and recipient domain
  list [--domain D] [--state S] [--sender S] [--limit N] [--json]
                                    the messages (as mailq): id, size, age, state, sender,
                                    each recipient with its state and last reply
  show ID [--json]                  one message: envelope, per-recipient state, attempts, last
                                    reply and the last attempts, the header section
  flush [ID...] [--domain D]        retry now: every message, the given ones, or those with
                                    a pending recipient in D (held messages stay held)
  hold ID... | --domain D | --all   take out of circulation until released
  release ID... | --domain D | --all
                                    make due now (held or scheduled)
  delete ID... | --domain D | --all remove (no bounce); with --domain only D's recipients
  bounce ID... | --domain D | --all fail the pending recipients and send the sender a DSN;
                                    with --domain only D's recipients
  check [--repair] [--json]         verify records, indexes and counters (stop the node for --repair)

list, show and check read the data dir (POSTERN_DATA_DIR) directly, the node running or not;
flush, hold, release, delete and bounce go through the running node's HTTP API
(POSTERN_HTTP_HOST, POSTERN_HTTP_PORT, POSTERN_API_TOKEN).
  ${ENV_FILE_USAGE}
exit: 0 done, 1 refused for some messages (or problems found by check), 64 usage,
69 the node is not running, 78 configuration (no queue in POSTERN_DATA_DIR, HTTP API off)`;

const spec = (usage: string, options: CommandSpec['options'], positionals?: CommandSpec['positionals']): CommandSpec => ({
  usage,
  options: { ...ENV_FILE_OPTION, ...options },
  ...(positionals ? { positionals } : {}),
});

const SPECS = {
  summary: spec(QUEUE_USAGE, { json: { type: 'boolean' } }),
  list: spec(`usage: postern queue list [--domain D] [--state ready|scheduled|leased|held] [--sender S] [--limit N] [--json]

  the queued messages in arrival order, each with its recipients (as mailq)
  --domain D    only messages with a pending recipient in D
  --state S     only messages in state S (scheduled: ready, next attempt in the future)
  --sender S    only messages from S (an address, or @domain; <> for bounces)
  --limit N     at most N messages
  --json        a JSON array (the HTTP API's message view)
  ${ENV_FILE_USAGE}`, { domain: { type: 'string' }, state: { type: 'string' }, sender: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } }),
  show: spec(`usage: postern queue show ID [--json]

  one message: envelope, state, per-recipient state, attempts, last reply and history (the
  last few attempts, oldest first, each with its time and reply), the headers
  ${ENV_FILE_USAGE}`, { json: { type: 'boolean' } }, { min: 1, max: 1, name: 'message id' }),
  flush: spec(`usage: postern queue flush [ID...] [--domain D]

  retry now, through the running node: every queued message, the given ones, or those with a
  pending recipient in D; held and leased messages are left as they are
  ${ENV_FILE_USAGE}`, { domain: { type: 'string' } }, { min: 0, max: Infinity }),
  check: spec(`usage: postern queue check [--repair] [--json]

  verify the queue in POSTERN_DATA_DIR: every record decodes and has its body, the indexes
  and counters match the records; exit 1 on problems, read-only. --repair (stop the node
  first) rebuilds indexes, counters and seq and sets undecodable records aside
  ${ENV_FILE_USAGE}`, { repair: { type: 'boolean' }, json: { type: 'boolean' } }),
} as const;

type Action = 'hold' | 'release' | 'delete' | 'bounce';

const ACTION_TEXT: Record<Action, string> = {
  hold: 'take out of circulation until released',
  release: 'make due now (held or scheduled messages)',
  delete: 'remove from the queue without a bounce; with --domain, only the recipients in D',
  bounce: 'fail the pending recipients and queue a DSN to the sender; with --domain, only the recipients in D',
};

function actionSpec(action: Action): CommandSpec {
  return spec(`usage: postern queue ${action} ID... | --domain D | --all

  ${ACTION_TEXT[action]}, through the running node's HTTP API
  ${ENV_FILE_USAGE}`, { domain: { type: 'string' }, all: { type: 'boolean' } }, { min: 0, max: Infinity });
}

export async function queueCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'list':
      return run(rest, SPECS.list, listCommand);
    case 'show':
      return run(rest, SPECS.show, showCommand);
    case 'check':
      return run(rest, SPECS.check, checkCommand);
    case 'flush':
      return run(rest, SPECS.flush, flushCommand);
    case 'hold':
    case 'release':
    case 'delete':
    case 'bounce':
      return run(rest, actionSpec(sub), (c, v, p) => actionCommand(sub, c, v, p));
    case 'help':
      process.stdout.write(QUEUE_USAGE + '\n');
      return EX.OK;
    default:
      if (sub !== undefined && !sub.startsWith('-')) throw usageError(`unknown queue command ${JSON.stringify(sub)}`, QUEUE_USAGE);
      return run(argv, SPECS.summary, summaryCommand);
  }
}

async function run(argv: string[], s: CommandSpec, fn: (config: Readonly<Config>, values: Values, positionals: string[]) => Promise<number>): Promise<number> {
  const p = parseCommand(argv, s);
  if (p === null) return EX.OK;
  return fn(await cliConfig(p.values), p.values, p.positionals);
}

async function withReader<T>(config: Readonly<Config>, fn: (r: import('../queue/queue-reader.js').QueueReader) => T | Promise<T>): Promise<T> {
  const { QueueReader } = await import('../queue/queue-reader.js');
  const reader = QueueReader.open(config.dataDir, config.queueMapBytes);
  try {
    return await fn(reader);
  } finally {
    await reader.close();
  }
}

// ------------------------------------------------------------------ read-only

function summaryCommand(config: Readonly<Config>, values: Values): Promise<number> {
  return withReader(config, (q) => {
    const c = q.counts();
    const corrupt = q.corruptCount();
    if (values.json === true) {
      console.log(JSON.stringify({ ...c, corruptRecords: corrupt }, null, 2));
      return EX.OK;
    }
    console.log(`messages: ${c.total}`);
    console.log(`by state: ready ${c.byState.ready}, scheduled ${c.byState.scheduled}, leased ${c.byState.leased}, held ${c.byState.held}`);
    console.log(`by priority: urgent ${c.byPriority.urgent}, normal ${c.byPriority.normal}, bulk ${c.byPriority.bulk}`);
    const domains = Object.entries(c.byDomain).sort((a, b) => b[1] - a[1]);
    if (domains.length > 0) {
      console.log('pending recipients by domain:');
      for (const [d, n] of domains.slice(0, 50)) console.log(`  ${String(n).padStart(8)}  ${safeText(d)}`);
      if (domains.length > 50) console.log(`  … and ${domains.length - 50} more domains`);
    }
    if (corrupt > 0) console.log(`corrupt records set aside: ${corrupt} (postern queue check lists them)`);
    return EX.OK;
  });
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

function replyText(r: { code?: number; enhanced?: string; text: string; command?: string; destination?: string } | undefined): string {
  if (r === undefined) return '';
  const code = [r.code, r.enhanced].filter((x) => x !== undefined).join(' ');
  const where = [r.command, r.destination].filter((x) => x !== undefined).join(', ');
  return safeText(`${code ? code + ' ' : ''}${r.text}${where ? ` (${where})` : ''}`);
}

function matches(m: MessageRecord, f: { domain?: string; state?: ListState; sender?: string }, nowMs: number): boolean {
  if (f.state !== undefined && listState(m, nowMs) !== f.state) return false;
  if (f.domain !== undefined && !m.recipients.some((r) => r.state === 'pending' && r.domain === f.domain)) return false;
  if (f.sender !== undefined) {
    const s = m.sender.toLowerCase();
    if (f.sender === '<>') return s === '';
    if (f.sender.startsWith('@')) return s.endsWith(f.sender);
    return s === f.sender;
  }
  return true;
}

function listCommand(config: Readonly<Config>, values: Values): Promise<number> {
  const usage = SPECS.list.usage;
  const state = str(values, 'state');
  if (state !== undefined && !(LIST_STATES as readonly string[]).includes(state)) throw usageError(`--state ${JSON.stringify(state)}: one of ${LIST_STATES.join(', ')}`, usage);
  const limit = num(values, 'limit', usage, (n) => Number.isInteger(n) && n >= 1) ?? Infinity;
  const filter = {
    domain: str(values, 'domain')?.toLowerCase().replace(/\.$/, ''),
    state: state as ListState | undefined,
    sender: str(values, 'sender')?.toLowerCase(),
  };
  const json = values.json === true;
  return withReader(config, async (q) => {
    const { messageView } = await import('../http/message-view.js');
    const nowMs = Date.now();
    const out: string[] = [];
    const flush = (): void => {
      if (out.length > 0) process.stdout.write(out.join(''));
      out.length = 0;
    };
    let n = 0;
    let bytes = 0;
    if (json) out.push('[');
    else out.push(`${'ID'.padEnd(16)}  ${'SIZE'.padStart(9)}  ${'AGE'.padEnd(6)}  ${'STATE'.padEnd(9)}  SENDER\n`);
    for (const m of q.records()) {
      if (!matches(m, filter, nowMs)) continue;
      if (n >= limit) break;
      n++;
      bytes += m.size;
      if (json) {
        // The same clock as the filter: queue_state is the state --state matched.
        out.push(`${n > 1 ? ',' : ''}\n${JSON.stringify(messageView(m, nowMs))}`);
      } else {
        out.push(`${m.id.padEnd(16)}  ${String(m.size).padStart(9)}  ${age(nowMs - m.receivedAt).padEnd(6)}  ${listState(m, nowMs).padEnd(9)}  ${m.sender === '' ? '<>' : safeText(m.sender)}\n`);
        for (const r of m.recipients) {
          const last = replyText(r.lastReply);
          out.push(`    ${safeText(r.address)}  ${r.state}${r.attempts ? `, ${r.attempts} attempt${r.attempts === 1 ? '' : 's'}` : ''}${last ? `: ${last}` : ''}\n`);
        }
      }
      if (out.length >= 256) flush();
    }
    if (json) out.push(n > 0 ? '\n]\n' : ']\n');
    else out.push(`-- ${n} message${n === 1 ? '' : 's'}, ${bytes} bytes${Number.isFinite(limit) && n >= limit ? ` (--limit ${limit} reached)` : ''}\n`);
    flush();
    return EX.OK;
  });
}

function showCommand(config: Readonly<Config>, values: Values, positionals: string[]): Promise<number> {
  const id = positionals[0]!;
  return withReader(config, async (q) => {
    const m = q.get(id);
    if (m === undefined) throw new PosternError('PST_ERR_QUEUE_NOT_FOUND', `no message ${JSON.stringify(id)} in the queue in ${config.dataDir}`);
    const headers = q.headers(id);
    const nowMs = Date.now();
    if (values.json === true) {
      const { messageView } = await import('../http/message-view.js');
      console.log(JSON.stringify({ ...messageView(m, nowMs), headers: headers?.toString('utf8') ?? null }, null, 2));
      return EX.OK;
    }
    const iso = (ms: number): string => new Date(ms).toISOString();
    const lines = [
      `id:         ${m.id}`,
      `state:      ${listState(m, nowMs)}${m.state === 'ready' ? `, next attempt ${iso(m.nextAttemptAt)}${m.nextAttemptAt > nowMs ? ` (in ${age(m.nextAttemptAt - nowMs)})` : ' (due)'}` : ''}${m.lease ? `, leased by ${safeText(m.lease.owner)} until ${iso(m.lease.expiresAt)}` : ''}`,
      `priority:   ${['urgent', 'normal', 'bulk'][m.priority]}`,
      `sender:     <${safeText(m.sender)}>`,
      `received:   ${iso(m.receivedAt)} (${age(nowMs - m.receivedAt)} ago)${m.client ? ` from ${safeText(m.client.ip)}${m.client.helo ? ` (${safeText(m.client.helo)})` : ''}${m.client.tls ? ', TLS' : ''}${m.client.authUser ? `, AUTH ${safeText(m.client.authUser)}` : ''}` : ''}`,
      `size:       ${m.size} bytes${m.bodyType ? `, ${m.bodyType}` : ''}${m.smtputf8 ? ', SMTPUTF8' : ''}`,
      `attempts:   ${m.attempts}`,
      `pool:       ${m.pool !== undefined ? `${safeText(m.pool)} (named by the client)` : 'by the sender domain (shaping file)'}`,
      `recipients:`,
    ];
    for (const r of m.recipients) {
      const source = sourceOfDestination(r.lastReply?.destination);
      lines.push(`  ${safeText(r.address)}: ${r.state}, ${r.attempts} attempt${r.attempts === 1 ? '' : 's'}${source !== null ? `, source ${safeText(source)}` : ''}`);
      if (r.lastReply) lines.push(`    last reply${r.lastReply.at ? ` at ${iso(r.lastReply.at)}` : ''}: ${replyText(r.lastReply)}`);
      const h = r.history ?? [];
      if (h.length > 0) {
        const earlier = r.attempts - h.length;
        lines.push(`    history (last ${h.length} attempt${h.length === 1 ? '' : 's'}, oldest first${earlier > 0 ? `; ${earlier} earlier not kept` : ''}):`);
        for (const a of h) lines.push(`      ${iso(a.at)}  ${replyText(a)}`);
      }
    }
    lines.push('headers:');
    if (headers === null) lines.push('  (no body stored)');
    else for (const h of headers.toString('utf8').split('\r\n')) if (h !== '') lines.push(`  ${safeText(h)}`);
    console.log(lines.join('\n'));
    return EX.OK;
  });
}

async function checkCommand(config: Readonly<Config>, values: Values): Promise<number> {
  const repair = values.repair === true;
  const { checkQueueFolder } = await import('../queue/check-queue.js');
  const r = checkQueueFolder(config.dataDir, { repair, mapSizeBytes: config.queueMapBytes });
  const code = r.remaining > 0 ? EX.FAILURE : EX.OK;
  if (values.json === true) {
    console.log(JSON.stringify({ path: config.dataDir, ok: r.remaining === 0, ...r }, null, 2));
    return code;
  }
  console.log(`queue ${config.dataDir}: ${r.records} records`);
  for (const p of r.problems) console.log(`problem: ${safeText(p.detail)}`);
  const n = r.problems.length;
  if (n === 0) console.log('no problems');
  else if (!repair) console.log(`${n} problem${n === 1 ? '' : 's'}; postern queue check --repair fixes them (stop the node first)`);
  else if (r.remaining === 0) console.log(`${n} problem${n === 1 ? '' : 's'} repaired`);
  else console.log(`${n} problem${n === 1 ? '' : 's'}, ${r.remaining} left after the repair`);
  if (r.corrupt.length > 0) {
    console.log(`set aside as corrupt (sub-database 'corrupt'): ${r.corrupt.length}`);
    for (const c of r.corrupt) console.log(`  ${safeText(c.id)}  ${Number.isFinite(c.at) ? new Date(c.at).toISOString() : '?'}  record ${c.recordBytes} B, body ${c.bodyBytes} B  ${safeText(c.reason)}`);
  }
  return code;
}

// ------------------------------------------------------------------ through the node

/** Every queued message's id, from the node (pages of 1000), before any of them is changed. */
async function allIds(api: NodeApi): Promise<string[]> {
  const ids: string[] = [];
  let after: string | null = null;
  for (;;) {
    const a = await api.request('GET', `/v1/queue/messages?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    if (a.status !== 200) throw new PosternError('PST_ERR_CLI_NODE_REFUSED', `listing the queue: ${apiError(a)}`);
    for (const m of a.json.messages as { id: string }[]) ids.push(m.id);
    after = a.json.next as string | null;
    if (after === null) return ids;
  }
}

const MESSAGE_REQUEST: Record<Action | 'flush', { method: 'POST' | 'DELETE'; suffix: string; done: string }> = {
  hold: { method: 'POST', suffix: '/hold', done: 'held' },
  release: { method: 'POST', suffix: '/release', done: 'released' },
  delete: { method: 'DELETE', suffix: '', done: 'deleted' },
  bounce: { method: 'POST', suffix: '/bounce', done: 'bounced' },
  flush: { method: 'POST', suffix: '/retry', done: 'due now' },
};

/** One request per message; a refusal (no such message, leased, held) is reported and counted. */
async function perMessage(api: NodeApi, action: Action | 'flush', ids: string[], quietOk: boolean): Promise<number> {
  const r = MESSAGE_REQUEST[action];
  let refused = 0;
  let done = 0;
  for (const id of ids) {
    const a = await api.request(r.method, `/v1/queue/messages/${encodeURIComponent(id)}${r.suffix}`);
    if (a.status === 200) {
      done++;
      if (!quietOk) console.log(`${id}: ${r.done}${action === 'bounce' && a.json.dsn_id ? ` (DSN ${String(a.json.dsn_id)})` : ''}`);
    } else {
      refused++;
      console.error(`postern: ${safeText(id)}: ${safeText(apiError(a))}`);
    }
  }
  if (quietOk) console.log(`${done} message${done === 1 ? '' : 's'} ${r.done}${refused ? `, ${refused} refused` : ''}`);
  return refused > 0 ? EX.FAILURE : EX.OK;
}

/** A destination action, repeated while the node says there is more (bounce and delete work 500 messages a call). */
async function perDomain(api: NodeApi, action: Action | 'flush', domain: string): Promise<number> {
  const verb = action === 'flush' ? 'retry' : action;
  const path = `/v1/queue/destinations/${encodeURIComponent(domain)}${action === 'delete' ? '' : '/' + verb}`;
  let messages = 0;
  let skipped = 0;
  for (;;) {
    const a: ApiAnswer = await api.request(action === 'delete' ? 'DELETE' : 'POST', path);
    if (a.status !== 200) throw new PosternError('PST_ERR_CLI_NODE_REFUSED', `${action} ${domain}: ${apiError(a)}`);
    const n = Number(a.json.messages ?? 0);
    messages += n;
    skipped += Number(a.json.skipped ?? 0);
    // Stop when nothing changed: what is left is leased (a delivery in flight).
    if (a.json.more !== true || n === 0) break;
  }
  console.log(`${messages} message${messages === 1 ? '' : 's'} with recipients in ${safeText(domain)}: ${MESSAGE_REQUEST[action].done}${skipped ? ` (${skipped} being delivered, left alone)` : ''}`);
  return EX.OK;
}

function target(values: Values, ids: string[], usage: string, allowNone: boolean): { domain?: string; all: boolean } {
  const domain = str(values, 'domain');
  const all = values.all === true;
  const given = (ids.length > 0 ? 1 : 0) + (domain !== undefined ? 1 : 0) + (all ? 1 : 0);
  if (given > 1) throw usageError('give message ids, --domain or --all, one of them', usage);
  if (given === 0 && !allowNone) throw usageError('which messages? give message ids, --domain D or --all', usage);
  return { ...(domain !== undefined ? { domain } : {}), all: all || given === 0 };
}

async function actionCommand(action: Action, config: Readonly<Config>, values: Values, ids: string[]): Promise<number> {
  const t = target(values, ids, actionSpec(action).usage, false);
  const api = new NodeApi(config);
  if (t.domain !== undefined) return perDomain(api, action, t.domain);
  if (t.all) return perMessage(api, action, await allIds(api), true);
  return perMessage(api, action, ids, false);
}

async function flushCommand(config: Readonly<Config>, values: Values, ids: string[]): Promise<number> {
  const t = target(values, ids, SPECS.flush.usage, true);
  const api = new NodeApi(config);
  if (t.domain !== undefined) return perDomain(api, 'flush', t.domain);
  if (ids.length > 0) return perMessage(api, 'flush', ids, false);
  // Every message has a pending recipient, so retrying every destination retries them all.
  const a = await api.request('GET', '/v1/queue/destinations?limit=1000');
  if (a.status !== 200) throw new PosternError('PST_ERR_CLI_NODE_REFUSED', `listing the destinations: ${apiError(a)}`);
  if (a.json.truncated === true) return perMessage(api, 'flush', await allIds(api), true);
  const domains = a.json.destinations as { domain: string }[];
  // Counted: the recipient domains retried, and the messages that changed (a message already
  // due, or due through an earlier domain of this loop, is not counted again).
  let messages = 0;
  for (const d of domains) {
    const r = await api.request('POST', `/v1/queue/destinations/${encodeURIComponent(d.domain)}/retry`);
    if (r.status !== 200) throw new PosternError('PST_ERR_CLI_NODE_REFUSED', `flush ${d.domain}: ${apiError(r)}`);
    messages += Number(r.json.messages ?? 0);
  }
  console.log(`${domains.length} recipient domain${domains.length === 1 ? '' : 's'} retried: ${messages} message${messages === 1 ? '' : 's'} made due now`);
  return EX.OK;
}
