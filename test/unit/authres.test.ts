// The authres filter (SPF + DKIM + DMARC via mailauth): offline, with a map resolver serving
// the sender domain's SPF, DKIM key and DMARC records, and messages signed with a fresh key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { createAuthFilter, cleanHeaders, type AuthFilterOptions } from '../../src/filter/authres/filter.js';
import authresDefault from '../../src/filter/authres/filter.js';
import { createMapResolver, dnsError, withDeadline, type DnsResolver } from '../../src/filter/authres/resolver.js';
import { FilterPool } from '../../src/filter/pool.js';
import type { FilterEnvelope, FilterInput } from '../../src/filter/messages.js';

// mailauth's signer (CommonJS, untyped): typed here, so this test needs no ambient declaration.
const { dkimSign } = createRequire(import.meta.url)('mailauth/lib/dkim/sign') as {
  dkimSign(msg: string, o: { signatureData: Array<{ signingDomain: string; selector: string; privateKey: string }> }): Promise<{ signatures: string; errors: unknown[] }>;
};

const MTA = 'mx.postern.test';
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
const keyB64 = (publicKey.export({ type: 'spki', format: 'der' }) as Buffer).toString('base64');
/** TXT records come back as string[][], long ones split in 255-octet strings. */
const txt = (s: string): string[][] => [s.match(/.{1,255}/g)!];

const records = {
  'TXT example.com': txt('v=spf1 ip4:192.0.2.1 -all'),
  'TXT sel1._domainkey.example.com': txt(`v=DKIM1; k=rsa; p=${keyB64}`),
  'TXT _dmarc.example.com': txt('v=DMARC1; p=reject'),
};
const resolver = createMapResolver(records);

const plain = [
  'From: Alice <alice@example.com>',
  'To: bob@example.net',
  'Subject: quarterly numbers',
  'Date: Mon, 01 Jan 2024 00:00:00 +0000',
  'Message-ID: <1@example.com>',
  'MIME-Version: 1.0',
  'Content-Type: text/plain; charset=utf-8',
  '',
  'Hello Bob,',
  'the numbers are attached.',
  '',
].join('\r\n');

async function signed(msg: string): Promise<string> {
  const r = await dkimSign(msg, { signatureData: [{ signingDomain: 'example.com', selector: 'sel1', privateKey: keyPem }] });
  assert.deepEqual(r.errors, []);
  return r.signatures + msg;
}

function input(body: string, client: Partial<FilterEnvelope['client']> = {}, sender = 'alice@example.com'): FilterInput {
  return {
    id: 'T1',
    envelope: { sender, recipients: ['bob@example.net'], client: { ip: '192.0.2.1', helo: 'mail.example.com', tls: true, trusted: false, ...client } },
    body: Buffer.from(body, 'utf8'),
  };
}

function filter(o: Partial<AuthFilterOptions> = {}) {
  return createAuthFilter({ hostname: MTA, enforceDmarc: false, resolver, ...o });
}

/** Well-formed header block: CRLF only, continuations start with WSP, ends in CRLF, no empty line. */
function assertHeaderBlock(h: string): void {
  assert.ok(h.endsWith('\r\n'), 'ends with CRLF');
  assert.doesNotMatch(h, /(?<!\r)\n|\r(?!\n)/, 'CRLF only');
  for (const line of h.slice(0, -2).split('\r\n')) {
    assert.ok(line.length > 0 && line.length <= 998, `line length ${line.length}`);
    assert.ok(/^[ \t]/.test(line) || /^(Authentication-Results|Received-SPF): /.test(line), `unexpected line ${JSON.stringify(line)}`);
  }
}

/** The Authentication-Results field, unfolded. */
function ar(h: string): string {
  const m = /^Authentication-Results: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*/m.exec(h);
  assert.ok(m, `no Authentication-Results in ${JSON.stringify(h)}`);
  return m[0].replace(/\r\n(?=[ \t])/g, '');
}

test('authres: SPF, DKIM and DMARC pass from the permitted IP', async () => {
  const v = await filter()(input(await signed(plain)));
  assert.equal(v.action, 'accept');
  assertHeaderBlock(v.headers!);
  const a = ar(v.headers!);
  assert.match(a, new RegExp(`^Authentication-Results: ${MTA.replace(/\./g, '\\.')};`), 'our hostname is the authserv-id');
  assert.match(a, /\bspf=pass\b/);
  assert.match(a, /\bdkim=pass\b.*header\.d=example\.com|\bdkim=pass\b.*header\.i=@example\.com/);
  assert.match(a, /\bdmarc=pass\b/);
  assert.match(a, /header\.from=example\.com/);
  assert.match(v.headers!, /^Received-SPF: pass \(/m);
});

test('authres: another IP and a broken signature fail SPF, DKIM and DMARC; enforced p=reject refuses', async () => {
  // A signed header changed in transit: the signature no longer verifies.
  const tampered = (await signed(plain)).replace('Subject: quarterly numbers', 'Subject: urgent wire transfer');
  const msg = input(tampered, { ip: '198.51.100.7', helo: 'evil.example' });

  const tagged = await filter()(msg);
  assert.equal(tagged.action, 'accept', 'enforceDmarc off: tag only');
  assertHeaderBlock(tagged.headers!);
  const a = ar(tagged.headers!);
  assert.match(a, /\bspf=fail\b/);
  assert.match(a, /\bdkim=fail\b/);
  assert.match(a, /\bdmarc=fail\b/);
  assert.match(tagged.headers!, /^Received-SPF: fail /m);

  const enforced = await filter({ enforceDmarc: true })(msg);
  assert.equal(enforced.action, 'reject');
  assert.equal(enforced.reason, 'DMARC policy');

  // A changed body: mailauth (like Gmail) reports the body-hash mismatch as dkim=neutral.
  const body = await filter({ enforceDmarc: true })(input((await signed(plain)).replace('the numbers', 'no numbers'), { ip: '198.51.100.7' }));
  assert.match(ar(body.headers!), /\bdkim=neutral \(body hash did not verify\)/);
  assert.match(ar(body.headers!), /\bdmarc=fail\b/);
  assert.equal(body.action, 'reject');

  // Unsigned from the wrong IP: dkim=none, still a DMARC failure.
  const unsigned = await filter({ enforceDmarc: true })(input(plain, { ip: '198.51.100.7' }));
  assert.match(ar(unsigned.headers!), /\bdkim=none\b/);
  assert.equal(unsigned.action, 'reject');
});

test('authres: enforceDmarc only refuses p=reject (p=none / p=quarantine are tagged), pct samples', async () => {
  for (const [p, expect] of [['none', 'accept'], ['quarantine', 'accept']] as const) {
    const r = createMapResolver({ ...records, 'TXT _dmarc.example.com': txt(`v=DMARC1; p=${p}`) });
    const v = await filter({ enforceDmarc: true, resolver: r })(input(plain, { ip: '198.51.100.7' }));
    assert.equal(v.action, expect, `p=${p}`);
    assert.match(ar(v.headers!), /\bdmarc=fail\b/);
  }
  const half = createMapResolver({ ...records, 'TXT _dmarc.example.com': txt('v=DMARC1; p=reject; pct=50') });
  assert.equal((await filter({ enforceDmarc: true, resolver: half, random: () => 0.9 })(input(plain, { ip: '198.51.100.7' }))).action, 'accept');
  assert.equal((await filter({ enforceDmarc: true, resolver: half, random: () => 0.1 })(input(plain, { ip: '198.51.100.7' }))).action, 'reject');
});

test('authres: a DNS timeout is temperror, and the message is accepted', async () => {
  const hang: DnsResolver = () => new Promise(() => {});
  const started = performance.now();
  const v = await filter({ resolver: hang, timeoutMs: 300, enforceDmarc: true })(input(await signed(plain), { ip: '198.51.100.7' }));
  const took = performance.now() - started;
  assert.equal(v.action, 'accept');
  assert.ok(took < 1200, `took ${took.toFixed(0)} ms`);
  assertHeaderBlock(v.headers!);
  const a = ar(v.headers!);
  assert.match(a, new RegExp(`^Authentication-Results: ${MTA.replace(/\./g, '\\.')};`));
  assert.match(a, /\bspf=temperror\b/);
  assert.match(a, /\bdkim=temperror\b/);
  assert.match(a, /\bdmarc=temperror\b/);
});

test('authres: SERVFAIL and odd resolver failures are temperror, never a throw', async () => {
  const servfail: DnsResolver = async (name, rr) => {
    throw dnsError('ESERVFAIL', name, rr);
  };
  const v = await filter({ resolver: servfail, enforceDmarc: true })(input(await signed(plain)));
  assert.equal(v.action, 'accept');
  const a = ar(v.headers!);
  assert.match(a, /\bspf=temperror\b/);
  assert.match(a, /\bdkim=temperror\b/);
  assert.match(a, /\bdmarc=temperror\b/);

  const weird: DnsResolver = () => {
    throw 'not an error'; // synchronous, not an Error
  };
  const w = await filter({ resolver: weird })(input(await signed(plain)));
  assert.equal(w.action, 'accept');
  assert.match(ar(w.headers!), /\bspf=temperror\b/);
});

test('authres: trusted and authenticated clients get nothing (submission, not inbound)', async () => {
  const noDns: DnsResolver = async () => assert.fail('no DNS for submissions');
  const f = filter({ resolver: noDns, enforceDmarc: true });
  assert.deepEqual(await f(input(plain, { ip: '198.51.100.7', trusted: true })), { action: 'accept' });
  assert.deepEqual(await f(input(plain, { ip: '198.51.100.7', authUser: 'alice' })), { action: 'accept' });
});

test('authres: null reverse-path checks the HELO identity; mapped IPv4 matches ip4:', async () => {
  const r = createMapResolver({ ...records, 'TXT mail.example.com': txt('v=spf1 ip4:192.0.2.1 -all') });
  const v = await filter({ resolver: r })(input(await signed(plain), { ip: '::ffff:192.0.2.1' }, ''));
  const a = ar(v.headers!);
  assert.match(a, /\bspf=pass\b/);
  assert.match(a, /smtp\.mailfrom=postmaster@mail\.example\.com/);
  assert.match(a, /\bdkim=pass\b/);
});

test('authres: cleanHeaders makes any block safe to prepend', () => {
  assert.equal(cleanHeaders('A: b\n c\r\n\r\nstray\rD: e'), 'A: b\r\n c\r\n stray\r\nD: e\r\n');
  assert.equal(cleanHeaders(' orphan\r\nA: b\r\n'), 'A: b\r\n');
  assert.equal(cleanHeaders(''), '');
  const long = cleanHeaders('A: ' + 'word '.repeat(400));
  assert.ok(long.endsWith('\r\n'));
  for (const line of long.slice(0, -2).split('\r\n')) assert.ok(line.length <= 998 && (line.startsWith('A: ') || line.startsWith(' ')), `bad line (${line.length})`);
  assert.equal(long.replace(/\r\n(?=[ \t])/g, ''), 'A: ' + 'word '.repeat(400).trimEnd() + '\r\n');
});

test('authres: withDeadline passes results through and times out late queries', async () => {
  const r = withDeadline(resolver, performance.now() + 1000);
  assert.deepEqual(await r('example.com', 'TXT'), records['TXT example.com']);
  await assert.rejects(r('nope.example.com', 'TXT'), { code: 'ENOTFOUND' });
  const past = withDeadline(resolver, performance.now() - 1);
  await assert.rejects(past('example.com', 'TXT'), { code: 'ETIMEOUT' });
});

test('authres: the default export without settings does nothing', async () => {
  assert.deepEqual(await authresDefault(input(plain)), { action: 'accept' });
});

test('authres: runs in the filter pool from workerData.builtin.authres (system resolver, offline)', async () => {
  const pool = new FilterPool({
    workers: 1,
    modules: [],
    // A dead local DNS server: nothing leaves the machine; lookups fail fast or time out.
    builtins: [{ name: 'authres', module: fileURLToPath(new URL('../../src/filter/authres/filter.js', import.meta.url)), settings: { hostname: MTA, enforceDmarc: true, timeoutMs: 500, dnsServers: ['127.0.0.1:9'] } }],
    timeoutMs: 10_000,
    maxQueue: 4,
  });
  try {
    const env = (trusted: boolean): FilterEnvelope => ({ sender: 'alice@example.com', recipients: ['bob@example.net'], client: { ip: '198.51.100.7', helo: 'mail.example.com', tls: false, trusted } });
    const inbound = await pool.filter('P1', env(false), 'Received: x\r\n', Buffer.from(plain));
    assert.equal(inbound.verdict.action, 'accept');
    const text = inbound.body.toString('utf8');
    assert.ok(text.startsWith('Received: x\r\n'));
    assert.match(ar(text), new RegExp(`^Authentication-Results: ${MTA.replace(/\./g, '\\.')};.*\\bspf=temperror\\b.*\\bdmarc=temperror\\b`));
    assert.ok(text.endsWith(plain));

    const trusted = await pool.filter('P2', env(true), 'Received: x\r\n', Buffer.from(plain));
    assert.equal(trusted.verdict.action, 'accept');
    assert.equal(trusted.body.toString('utf8'), 'Received: x\r\n' + plain);
  } finally {
    await pool.close();
  }
});

test('only the first 8 DKIM-Signature fields are verified: 100 signatures over a 2 MiB body cost one hasher each no more', async () => {
  const { keepFirstSignatures, MAX_DKIM_SIGNATURES } = await import('../../src/filter/authres/filter.js');
  const sigs = Array.from({ length: 100 }, (_, i) => `DKIM-Signature: v=1; a=rsa-sha256; d=evil${i}.example; s=s;\r\n\tc=relaxed/relaxed; l=${i + 1}; h=from; bh=AAAA; b=AAAA`).join('\r\n');
  const msg = Buffer.from(`${sigs}\r\nFrom: a@example.com\r\nSubject: s\r\n\r\n${'x'.repeat(76)}\r\n`.repeat(1) + `${'y'.repeat(76)}\r\n`.repeat(27_000));
  const kept = keepFirstSignatures(msg);
  const head = kept.subarray(0, kept.indexOf('\r\n\r\n')).toString('latin1');
  assert.equal((head.match(/^DKIM-Signature:/gim) ?? []).length, MAX_DKIM_SIGNATURES);
  assert.match(head, /d=evil7\.example;[^]*\r\n\tc=relaxed\/relaxed; l=8;[^]*\r\nFrom: a@example\.com\r\nSubject: s$/, 'the first 8 kept whole, with their folded lines; the rest of the header as it was');
  assert.ok(!/evil8\.example/.test(head));
  assert.ok(kept.subarray(kept.indexOf('\r\n\r\n')).equals(msg.subarray(msg.indexOf('\r\n\r\n'))), 'the body untouched');
  assert.equal(keepFirstSignatures(Buffer.from('DKIM-Signature: a\r\n\r\nb')).toString(), 'DKIM-Signature: a\r\n\r\nb');
  const t0 = performance.now();
  const v = await filter()(input(msg.toString('latin1')));
  assert.equal(v.action, 'accept');
  assert.ok(performance.now() - t0 < 5000, `verified in ${Math.round(performance.now() - t0)} ms`);
});
