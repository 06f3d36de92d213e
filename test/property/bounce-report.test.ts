// Reports come from the Internet: whatever bytes arrive, the report reader returns a value
// (never throws, never hangs) with bounded contents, and the bounce processor neither throws nor
// suppresses anyone without a valid VERP tag. Inputs: arbitrary bytes, and a valid DSN with
// random cuts, splices and byte changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseReport, MAX_DSN_GROUPS } from '../../src/delivery/bounce-report.js';
import { BounceProcessor } from '../../src/delivery/bounce-processor.js';
import { readBounceRules } from '../../src/config/resources.js';
import { Queue } from '../../src/queue/store.js';
import { silentLogger } from '../../src/log/logger.js';
import { tmpdir } from '../helpers/tmpdir.js';

const VALID = [
  'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
  '',
  '--b',
  'Content-Type: message/delivery-status',
  '',
  'Reporting-MTA: dns; mx.x.test',
  '',
  'Final-Recipient: rfc822; victim@x.test',
  'Action: failed',
  'Status: 5.1.1',
  'Diagnostic-Code: smtp; 550 5.1.1 user unknown',
  '',
  '--b',
  'Content-Type: message/rfc822',
  '',
  'Return-Path: <b+0123456789abcdef.aaaaaaaa=victim=x.test@bounces.test>',
  'Message-ID: <0123456789abcdef@mx.test>',
  '',
  'x',
  '--b--',
  '',
].join('\r\n');

const mangled = fc
  .tuple(fc.nat(VALID.length), fc.nat(VALID.length), fc.uint8Array({ maxLength: 64 }), fc.boolean())
  .map(([a, b, junk, cut]) => {
    const base = Buffer.from(VALID);
    const [i, j] = a <= b ? [a, b] : [b, a];
    return cut ? Buffer.concat([base.subarray(0, i), Buffer.from(junk), base.subarray(j)]) : Buffer.concat([base.subarray(0, i), Buffer.from(junk), base.subarray(i)]);
  });
const input = fc.oneof(fc.uint8Array({ maxLength: 2000 }).map((u) => Buffer.from(u)), mangled);

test('parseReport returns a bounded value for any input', async () => {
  await fc.assert(
    fc.asyncProperty(input, async (buf) => {
      const r = await parseReport(buf);
      assert.ok(['dsn', 'arf', 'other'].includes(r.kind));
      if (r.kind === 'dsn') {
        assert.ok(r.recipients.length <= MAX_DSN_GROUPS);
        for (const g of r.recipients) assert.ok((g.diagnostic ?? '').length <= 1000 && g.action.length <= 20);
      }
    }),
    { numRuns: 300 },
  );
});

test('the bounce processor never throws and, without a valid tag, never suppresses', async (t) => {
  const queue = Queue.open({ path: tmpdir(t, 'postern-bounce-prop-'), mapSizeBytes: 64 * 1024 * 1024 });
  t.after(() => queue.close());
  const p = new BounceProcessor({
    queue,
    log: silentLogger(),
    rules: readBounceRules(''),
    verp: { domain: 'bounces.test', key: Buffer.alloc(32, 7) },
    suppressOn: new Set(['invalid-recipient', 'complaint']),
    maxReportBytes: 1 << 20,
    hostname: 'mx.test',
    isReportAddress: () => true,
  });
  await fc.assert(
    fc.asyncProperty(input, async (buf) => {
      await p.process(['b+0123456789abcdef.aaaaaaaa=victim=x.test@bounces.test'], buf, 'prop');
    }),
    { numRuns: 200 },
  );
  assert.equal(queue.suppressions.count(), 0);
  assert.ok(p.stats.reports === 200);
});
