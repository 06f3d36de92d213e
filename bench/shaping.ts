// The shaping bench (issue 14, "Adaptive back-off"): a provider that allows `maxConnections`
// sessions at once (more are greeted "421 4.7.0 Too many connections") and `ratePerSec`
// messages per second (more get "451 4.7.1 Rate limit exceeded" after their data), fed
// `messages` messages by a postern node with the default settings and one route pointing at
// it. Measured: the time from the first injection to the last message accepted by the
// provider, against the ideal (messages / ratePerSec); connections refused; messages refused
// for rate; bounces (there must be none).
//   node build/bench/shaping.js [messages] [maxConnections] [ratePerSec]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startSink } from './lib/sink.js';
import { inject } from './lib/relay-inject.js';
import { loadConfig } from '../src/config/load.js';
import { startNode } from '../src/main.js';
import { silentLogger } from '../src/log/logger.js';

export interface ShapingOptions {
  messages: number;
  maxConnections: number;
  ratePerSec: number;
  /** Give up after this long (the run then reports what arrived). */
  timeLimitMs: number;
  size?: number;
  /** The scheduler's poll interval (default: the node's own, 1 s). */
  pollIntervalMs?: number;
}

export interface ShapingResult {
  messages: number;
  delivered: number;
  bounced: number;
  /** Connection attempts greeted 421 by the provider. */
  refused: number;
  /** Messages answered 451 for rate by the provider. */
  rateRefused: number;
  /** Connection attempts in all. */
  connections: number;
  maxOpen: number;
  elapsedMs: number;
  idealMs: number;
  /** elapsedMs / idealMs. */
  ratio: number;
  timedOut: boolean;
}

export async function shapingOnce(o: ShapingOptions): Promise<ShapingResult> {
  const sink = await startSink({ port: 0, maxConnections: o.maxConnections, ratePerSec: o.ratePerSec });
  const dir = mkdtempSync(join(tmpdir(), 'postern-shaping-'));
  try {
    const config = loadConfig({
      POSTERN_SMTP_HOST: '127.0.0.1',
      POSTERN_SMTP_PORT: '0',
      POSTERN_HOSTNAME: 'bench.test.example',
      POSTERN_DATA_DIR: join(dir, 'queue'),
      POSTERN_QUEUE_MAP_BYTES: '256M',
      POSTERN_HTTP_PORT: '',
      POSTERN_DELIVERY: 'routes',
      POSTERN_ROUTES: `throttle.example=smtp:127.0.0.1:${sink.port}`,
    });
    const node = await startNode(config, silentLogger(), { delivery: o.pollIntervalMs !== undefined ? { pollIntervalMs: o.pollIntervalMs } : {} });
    try {
      const t0 = performance.now();
      const deadline = Date.now() + o.timeLimitMs;
      const r = await inject('loadgen', { port: node.ports.smtpPort, messages: o.messages, size: o.size ?? 2048, connections: 4, recipients: 1, to: 'user@throttle.example', timeLimitMs: o.timeLimitMs });
      if (r.errors.length > 0) throw new Error(`injection failed: ${r.errors.slice(0, 3).join('; ')}`);
      const counters = () => node.delivery!.counters;
      while (sink.stats.messages + counters().bounced < r.accepted && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      const elapsedMs = performance.now() - t0;
      const idealMs = (o.messages / o.ratePerSec) * 1000;
      return {
        messages: r.accepted,
        delivered: sink.stats.messages,
        bounced: counters().bounced,
        refused: sink.stats.refused,
        rateRefused: sink.stats.rateRefused,
        connections: sink.stats.connections,
        maxOpen: sink.stats.maxOpen,
        elapsedMs,
        idealMs,
        ratio: elapsedMs / idealMs,
        timedOut: sink.stats.messages + counters().bounced < r.accepted,
      };
    } finally {
      await node.close();
    }
  } finally {
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<void> {
  const [messages = 5000, maxConnections = 5, ratePerSec = 50] = argv.map(Number);
  const r = await shapingOnce({ messages, maxConnections, ratePerSec, timeLimitMs: Math.max(60_000, (messages / ratePerSec) * 1000 * 4) });
  console.log(JSON.stringify(r));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
