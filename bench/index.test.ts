// The bench suite must not rot: every scenario of bench/scenarios runs at a tiny size against
// postern alone and yields finite, positive figures, and the report renders a well-formed SVG.
// Behavioural, not timed: no figure is compared with any threshold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runSuite, SCENARIO_NAMES } from './index.js';
import { Progress } from './lib/progress.js';
import type { Knobs } from './scenarios/common.js';
import { tmpdir } from '../test/helpers/tmpdir.js';

/** A small XML well-formedness check: balanced tags, quoted attributes, no stray '<' or '&'. */
function wellFormed(xml: string): void {
  const stack: string[] = [];
  const body = xml.replace(/<\?xml[^>]*\?>/, '');
  const re = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(body))) {
    const text = body.slice(last, m.index);
    assert.ok(!/[<>]/.test(text), `stray angle bracket in text near ${JSON.stringify(text.slice(0, 60))}`);
    assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(text), 'unescaped & in text');
    last = re.lastIndex;
    const [, close, name, , selfClose] = m;
    if (selfClose) continue;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else stack.push(name!);
  }
  assert.equal(body.slice(last).trim(), '', 'text after the root element');
  assert.deepEqual(stack, [], 'unclosed elements');
}

test('every bench scenario runs at a tiny size and the report is well formed', async (t) => {
  const outDir = tmpdir(t, 'postern-bench-suite-test-');
  const knobs: Knobs = {
    messages: 20,
    size: 1024,
    connections: 4,
    runs: 1,
    peers: [],
    timeLimitMs: 60_000,
    client: 'loadgen',
    fanoutRecipients: 5,
    fanoutMessages: 10,
    depthLevels: [0, 200],
    concurrencyLevels: [1, 10],
    sizes: [1024, 102400],
    relaySizes: [102400],
    httpRequests: 20,
    shaping: { messages: 20, connections: 2, ratePerSec: 50 },
    progress: new Progress(false),
  };
  const r = await runSuite({ scenarios: SCENARIO_NAMES, knobs, outDir, print: false });
  for (const name of ['accept', 'relay', 'relay-large', 'single', 'filters', 'fanout', 'sizes', 'concurrency', 'depth', 'http', 'shaping', 'cluster']) {
    assert.ok(r.measurements.some((m) => m.scenario === name), `scenario ${name} produced no measurement`);
  }
  for (const m of r.measurements) {
    assert.ok(m.ok, `${m.scenario} ${m.variant} ${m.target}: ${m.error}`);
    assert.equal(m.target, 'postern');
    assert.ok(Number.isFinite(m.msgsPerSec) && m.msgsPerSec > 0, `${m.scenario} ${m.variant}: msg/s ${m.msgsPerSec}`);
    assert.ok(Number.isFinite(m.elapsedMs) && m.elapsedMs > 0);
    assert.equal(m.accepted, m.messages);
  }
  assert.deepEqual(r.measurements.filter((m) => m.scenario === 'depth').map((m) => m.x), [0, 200]);
  assert.deepEqual(r.measurements.filter((m) => m.scenario === 'sizes').map((m) => m.x), [1024, 102400]);
  assert.deepEqual(r.measurements.filter((m) => m.scenario === 'fanout').map((m) => m.messages), [10], 'fanout runs BENCH_FANOUT_MESSAGES');
  const large = r.measurements.filter((m) => m.scenario === 'relay-large');
  assert.deepEqual(large.map((m) => m.variant), ['100 KiB']);
  assert.ok((large[0]!.detail!.peakRssMiB as number) > 10, 'relay-large reports postern\'s peak RSS');
  assert.match(large[0]!.detail!.summary as string, /peak RSS \d+ MiB/);
  assert.match(large[0]!.detail!.summary as string, /machine \d+ % busy/, 'relay-large says how busy the machine\'s cores were');
  const single = r.measurements.filter((m) => m.scenario === 'single');
  assert.deepEqual(single.map((m) => m.variant), ['1 conn']);
  assert.match(single[0]!.detail!.summary as string, /^single postern run 1: \d+ msg\/s, CPU ms\/msg main thread \d+\.\d\d \+ other threads -?\d+\.\d\d$/);
  const filters = r.measurements.filter((m) => m.scenario === 'filters');
  assert.deepEqual(filters.map((m) => m.variant), ['off', 'spam + dkim ed25519', 'spam + dkim rsa2048']);
  // The filters really ran: scored and signed messages reach the sink with X-Spam-* and DKIM-Signature fields.
  const perMsg = filters.map((m) => m.detail!.sinkBytesPerMessage as number);
  assert.ok(perMsg[1]! > perMsg[0]! + 150 && perMsg[2]! > perMsg[1]! + 150, `bytes per message at the sink: ${perMsg.join(', ')}`);
  assert.match(filters.at(-1)!.detail!.summary as string, /machine busy \(all cores, load and sink included\): off \d+ %/);
  assert.match(filters.at(-1)!.detail!.summary as string, /^filters: spam \+ dkim ed25519 \d+ msg\/s = \d+ %, spam \+ dkim rsa2048 \d+ msg\/s = \d+ % of off/);
  for (const row of r.rows) assert.ok(Number.isFinite(row.median) && row.min <= row.median && row.median <= row.max);
  assert.match(r.markdown, /^\| scenario \|/);
  assert.equal(r.markdown.split('\n').length, 2 + r.rows.length);

  const svg = readFileSync(r.svgFile, 'utf8');
  assert.equal(svg, r.svg);
  assert.ok(svg.startsWith('<svg'), 'the chart starts with <svg');
  wellFormed(svg);
  assert.match(svg, /<rect [^>]*fill="#1f77b4"/, 'a bar for postern');
  assert.match(svg, /<polyline /, 'the concurrency line chart');
  const json = JSON.parse(readFileSync(r.jsonFile, 'utf8')) as { measurements: unknown[]; summary: unknown[] };
  assert.equal(json.measurements.length, r.measurements.length);
  assert.equal(json.summary.length, r.rows.length);
});
