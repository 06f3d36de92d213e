// The one grammar each for durations, rates and domain names (src/lib).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration, parseDurationList, formatDuration } from '../../src/lib/duration.js';
import { parseRate, formatRate } from '../../src/lib/rate.js';
import { success, valueOf } from '../../src/lib/result.js';
import { isDomainName, toAsciiDomain, normalizeDomain } from '../../src/lib/domain-name.js';

test('durations: a bare number only where the caller takes milliseconds', () => {
  assert.deepEqual(parseDuration('300000', { bareMs: true }), success(300_000));
  assert.deepEqual(parseDuration('1w', { bareMs: true }), success(604_800_000));
  assert.deepEqual(parseDuration('2m', { bareMs: true }), success(120_000));
  assert.ok(!parseDuration('300000').ok, 'no unit, no guess');
  assert.ok(!parseDuration('5 s', { bareMs: true }).ok);
  assert.ok(!parseDuration('', { bareMs: true }).ok);
  assert.deepEqual(parseDurationList('1s,2s', 'retry schedule'), success([1000, 2000]));
});

test('formatDuration writes what parseDuration reads back', () => {
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.equal(formatDuration(0), '0ms');
  assert.equal(formatDuration(604_800_000 + 1), '1w1ms');
});

test('formatRate picks the shortest whole period', () => {
  assert.equal(formatRate(valueOf(parseRate('100/s'))), '100/s');
  assert.equal(formatRate(valueOf(parseRate('6000/m'))), '100/s');
  assert.equal(formatRate(valueOf(parseRate('10/h'))), '10/h');
  assert.equal(formatRate(valueOf(parseRate('50/5m'))), '10/m');
  assert.equal(formatRate(valueOf(parseRate('1/2d'))), '0.5/d');
});

test('domain names: LDH labels, U-labels only when asked, IDNs to A-labels', () => {
  assert.ok(isDomainName('mx1.example.org'));
  assert.ok(isDomainName('1and1.de'));
  for (const bad of ['', '-a.org', 'a-.org', 'a..org', 'a_b.org', 'a'.repeat(64) + '.org', `${'a.'.repeat(127)}ab`]) assert.ok(!isDomainName(bad), bad);
  assert.ok(!isDomainName('bücher.example'));
  assert.ok(isDomainName('bücher.example', { utf8: true }));
  assert.equal(toAsciiDomain(' Bücher.Example. '), 'xn--bcher-kva.example');
  assert.equal(toAsciiDomain('exa mple.org'), null);
  assert.equal(normalizeDomain('Example.ORG.'), 'example.org');
});
