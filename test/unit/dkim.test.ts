// DKIM signing (src/filter/dkim): key spec parsing, canonicalization, and signatures checked
// by an independent verifier (mailauth) with the public keys served from memory, not DNS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { loadKeys, loadKey, dkimDnsRecord, type DkimKey } from '../../src/filter/dkim/keys.js';
import { parseDkimKeys } from '../../src/config/dkim-keys.js';
import { success } from '../../src/lib/result.js';
import { signMessage, relaxedBody, relaxedHeader, fromDomain, parseHeaderSection } from '../../src/filter/dkim/sign.js';
import { tmpdir } from '../helpers/tmpdir.js';

type Alg = 'rsa' | 'ed25519';

function pem(alg: Alg): string {
  const { privateKey } = alg === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

function keyFiles(t: import('node:test').TestContext, entries: Array<{ domain: string; selector: string; alg: Alg }>): DkimKey[] {
  const dir = tmpdir(t, 'postern-dkim-');
  return loadKeys(
    entries.map((e, i) => {
      const keyFile = join(dir, `k${i}.pem`);
      writeFileSync(keyFile, pem(e.alg));
      return { domain: e.domain, selector: e.selector, keyFile };
    }),
  );
}

/** A resolver for mailauth serving `<selector>._domainkey.<domain>` TXT records from memory. */
function resolverFor(keys: DkimKey[]) {
  const records = new Map(keys.map((k) => [`${k.selector}._domainkey.${k.domain}`, dkimDnsRecord(k)]));
  return async (name: string, rr: string): Promise<string[][]> => {
    const r = rr === 'TXT' ? records.get(name.toLowerCase()) : undefined;
    if (!r) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return [[r]];
  };
}

async function verify(message: Buffer | string, keys: DkimKey[]) {
  const r = await dkimVerify(typeof message === 'string' ? Buffer.from(message, 'latin1') : message, { resolver: resolverFor(keys) });
  return r.results;
}

const MSG =
  'From: "Alice, Example" <alice@example.com>\r\n' +
  'To: bob@example.org,\r\n  carol@example.net\r\n' +
  'Subject:   hello   \t there\r\n' +
  'Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n' +
  'Message-ID: <m1@example.com>\r\n' +
  'MIME-Version: 1.0\r\n' +
  'Content-Type: text/plain; charset=utf-8\r\n' +
  'X-Unsigned: yes\r\n' +
  '\r\n' +
  'Hello Bob,  \r\n\r\nthe  body\twith   spaces.\r\n\r\n\r\n';

test('parseDkimKeys: the syntax, and errors naming the entry', () => {
  assert.deepEqual(parseDkimKeys(''), success([]));
  assert.deepEqual(parseDkimKeys('Example.COM:s2024:/etc/dkim/a.pem, example.org:ed.1:/k/b:c.pem'), success([
    { domain: 'example.com', selector: 's2024', keyFile: '/etc/dkim/a.pem' },
    { domain: 'example.org', selector: 'ed.1', keyFile: '/k/b:c.pem' },
  ]));
  assert.deepEqual(parseDkimKeys('bücher.example:s:/k.pem'), success([{ domain: 'xn--bcher-kva.example', selector: 's', keyFile: '/k.pem' }]));
  const bad: Array<[string, RegExp]> = [
    ['example.com:/k.pem', /^entry 1 \("example\.com:\/k\.pem"\): expected domain:selector:\/path\/to\/key\.pem$/],
    ['example.com:s:/a.pem,,x.org:s:/b', /^entry 2 \(""\) is empty$/],
    ['example.com:s:/a.pem,exa mple.org:s:/b', /^entry 2 .*"exa mple\.org" is not a domain name/],
    ['example.com:s_1:/a.pem', /^entry 1 .*"s_1" is not a valid selector/],
    ['example.com::/a.pem', /^entry 1 .*"" is not a valid selector/],
    ['example.com:s:', /^entry 1 .*key file path is empty/],
    ['example.com:s:/a.pem,EXAMPLE.com:t:/b.pem', /^entry 2 .*a second key for example\.com/],
  ];
  for (const [spec, re] of bad) {
    const r = parseDkimKeys(spec);
    assert.ok(!r.ok, spec);
    assert.match(r.error, re);
  }
});

test('loadKey: detects the algorithm; unreadable, non-key, weak and unsupported keys are named errors', (t) => {
  const dir = tmpdir(t, 'postern-dkim-');
  const [rsa, ed] = keyFiles(t, [{ domain: 'a.example', selector: 'r', alg: 'rsa' }, { domain: 'b.example', selector: 'e', alg: 'ed25519' }]);
  assert.equal(rsa!.algorithm, 'rsa-sha256');
  assert.equal(ed!.algorithm, 'ed25519-sha256');
  assert.match(dkimDnsRecord(rsa!), /^v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA[A-Za-z0-9+/=]+$/);
  assert.match(dkimDnsRecord(ed!), /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);

  assert.throws(() => loadKey({ domain: 'x.example', selector: 's', keyFile: join(dir, 'missing.pem') }), /^PosternError: DKIM key x\.example:s \(.*missing\.pem\): ENOENT/);
  assert.throws(() => loadKey({ domain: 'x.example', selector: 's', keyFile: join(dir, 'missing.pem') }), { code: 'PST_ERR_DKIM_KEY' });
  writeFileSync(join(dir, 'junk.pem'), 'not a key');
  assert.throws(() => loadKey({ domain: 'x.example', selector: 's', keyFile: join(dir, 'junk.pem') }), /DKIM key x\.example:s .*junk\.pem/);
  writeFileSync(join(dir, 'small.pem'), generateKeyPairSync('rsa', { modulusLength: 512 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  assert.throws(() => loadKey({ domain: 'x.example', selector: 's', keyFile: join(dir, 'small.pem') }), /RSA key of 512 bits/);
  writeFileSync(join(dir, 'ec.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  assert.throws(() => loadKey({ domain: 'x.example', selector: 's', keyFile: join(dir, 'ec.pem') }), /unsupported key type ec/);
});

test('relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4)', () => {
  assert.equal(relaxedHeader('SubJect \t:  a \t b\r\n\t c  '), 'subject:a b c\r\n');
  assert.equal(relaxedBody(Buffer.from(' C \r\nD \t E\r\n\r\n\r\n')).toString(), ' C\r\nD E\r\n');
  assert.equal(relaxedBody(Buffer.from('\r\n\r\n')).length, 0);
  assert.equal(relaxedBody(Buffer.from('')).length, 0);
  assert.equal(relaxedBody(Buffer.from('x\n\ty \n')).toString(), 'x\r\n y\r\n');
});

test('fromDomain: one address, display names, comments, IDN; none or several → null', () => {
  const f = (v: string) => fromDomain(`From: ${v}`);
  assert.equal(f('alice@Example.COM'), 'example.com');
  assert.equal(f('"Smith, J <j@evil.example>" <j@good.example>'), 'good.example');
  assert.equal(f('j@good.example (Jay <x@evil.example>)'), 'good.example');
  assert.equal(f('"a@b"@quoted.example'), 'quoted.example');
  assert.equal(fromDomain(Buffer.from('From: u@bücher.example', 'utf8').toString('latin1')), 'xn--bcher-kva.example');
  assert.equal(f(''), null);
  assert.equal(f('undisclosed-recipients:;'), null);
  assert.equal(f('a@x.example, b@y.example'), null);
  assert.equal(f('<a@x.example>, <b@y.example>'), null);
  assert.equal(f('user@[192.0.2.1]'), null);
  assert.equal(f('no-at-sign'), null);
});

for (const alg of ['rsa', 'ed25519'] as const) {
  test(`${alg}: the signature verifies with mailauth; Received on top is fine; tampering breaks it`, async (t) => {
    const keys = keyFiles(t, [{ domain: 'example.com', selector: `sel-${alg}`, alg }]);
    const map = new Map(keys.map((k) => [k.domain, k]));
    const msg = Buffer.from(MSG, 'latin1');
    const signed = signMessage(msg, map);
    assert.ok(signed);
    const header = signed.header;
    assert.match(header, /^DKIM-Signature: v=1; a=(rsa|ed25519)-sha256; c=relaxed\/relaxed; d=example\.com;/);
    assert.match(header, new RegExp(`a=${alg}-sha256;`));
    assert.ok(header.endsWith('\r\n'));
    assert.ok(header.split('\r\n').every((l) => l.length <= 78), 'folded lines');
    const h = /h=([^;]+);/.exec(header)![1]!.replace(/\s+/g, '');
    assert.equal(h, 'from:from:subject:date:message-id:to:mime-version:content-type', 'signed fields, From oversigned, no x-unsigned');

    const good = await verify(Buffer.concat([Buffer.from(header), msg]), keys);
    assert.equal(good.length, 1);
    assert.equal(good[0]!.status.result, 'pass', good[0]!.info);
    assert.equal(good[0]!.signingDomain, 'example.com');

    // As postern stores it: Received (prefix) above the filter's headers, then the message.
    const stored = 'Received: from client.example ([192.0.2.7])\r\n\tby mx.example (postern) with ESMTPSA id X1;\r\n\tMon, 01 Jan 2024 10:00:01 +0000\r\n' + header + MSG;
    assert.equal((await verify(stored, keys))[0]!.status.result, 'pass');
    // Unsigned header added later: still passes.
    assert.equal((await verify(header + 'X-Later: 1\r\n' + MSG, keys))[0]!.status.result, 'pass');

    // Tampering: the body, a signed header, an added second From (oversigning).
    const badBody = await verify(header + MSG.replace('the  body', 'the  b0dy'), keys);
    assert.notEqual(badBody[0]!.status.result, 'pass');
    assert.match(badBody[0]!.status.comment ?? '', /body hash/);
    const badSubject = await verify(header + MSG.replace('hello', 'Hello'), keys);
    assert.equal(badSubject[0]!.status.result, 'fail');
    const extraFrom = await verify(header + MSG.replace('X-Unsigned', 'From: mallory@evil.example\r\nX-Unsigned'), keys);
    assert.notEqual(extraFrom[0]!.status.result, 'pass');
    // Whitespace changes survive relaxed canonicalization.
    assert.equal((await verify(header + MSG.replace('Subject:   hello', 'Subject: hello').replace('with   spaces.', 'with spaces.  '), keys))[0]!.status.result, 'pass');
  });
}

test('domain choice: exact key first, else the nearest parent; other domains unsigned', (t) => {
  const keys = keyFiles(t, [
    { domain: 'example.com', selector: 'p', alg: 'ed25519' },
    { domain: 'eu.example.com', selector: 'c', alg: 'ed25519' },
  ]);
  const map = new Map(keys.map((k) => [k.domain, k]));
  const withFrom = (from: string) => Buffer.from(`From: ${from}\r\nSubject: x\r\n\r\nbody\r\n`);
  assert.equal(signMessage(withFrom('a@eu.example.com'), map)?.key.domain, 'eu.example.com');
  assert.equal(signMessage(withFrom('a@news.eu.example.com'), map)?.key.domain, 'eu.example.com');
  assert.equal(signMessage(withFrom('a@us.example.com'), map)?.key.domain, 'example.com');
  assert.equal(signMessage(withFrom('a@EXAMPLE.com'), map)?.key.domain, 'example.com');
  assert.equal(signMessage(withFrom('a@notexample.com'), map), null);
  assert.equal(signMessage(withFrom('a@example.org'), map), null);
});

test('odd messages are left unsigned, never a throw', (t) => {
  const keys = keyFiles(t, [{ domain: 'example.com', selector: 's', alg: 'ed25519' }]);
  const map = new Map(keys.map((k) => [k.domain, k]));
  const odd = [
    '',
    '\r\n',
    'Subject: no from\r\n\r\nbody\r\n',
    'From: a@example.com\r\nFrom: b@example.com\r\n\r\nx\r\n',
    ' folded first line\r\nFrom: a@example.com\r\n\r\nx\r\n',
    'From a@example.com Mon Jan  1 00:00:00 2024\r\nFrom: a@example.com\r\n\r\nx\r\n',
    'Not a header line\r\nFrom: a@example.com\r\n\r\nx\r\n',
    'From: <>\r\n\r\nx\r\n',
    'From: a@example.com\r\n\r\nlast line without a line break ',
    'From: a@\r\n\r\nx\r\n',
    'From: a@exa_mple.com\r\n\r\nx\r\n',
    '\x00\xff\xfe',
  ];
  for (const m of odd) assert.equal(signMessage(Buffer.from(m, 'latin1'), map), null, JSON.stringify(m));
});

test('edge messages still sign and verify: headers only, empty body, 8-bit headers, bare LF body', async (t) => {
  const keys = keyFiles(t, [{ domain: 'example.com', selector: 's', alg: 'ed25519' }]);
  const map = new Map(keys.map((k) => [k.domain, k]));
  const cases = [
    'From: a@example.com\r\nSubject: empty body\r\n\r\n',
    Buffer.from('From: "Jürgen" <j@example.com>\r\nSubject: grüße\r\n\r\nHallo\r\n', 'utf8').toString('latin1'),
    'From: a@example.com\r\n\r\nline one\nline two\n',
  ];
  for (const m of cases) {
    const msg = Buffer.from(m, 'latin1');
    assert.ok(parseHeaderSection(msg));
    const s = signMessage(msg, map);
    assert.ok(s, JSON.stringify(m));
    const r = await verify(Buffer.concat([Buffer.from(s.header), msg]), keys);
    assert.equal(r[0]!.status.result, 'pass', `${JSON.stringify(m)}: ${r[0]!.info}`);
  }
  // All header, no empty line (mailauth does not parse those): the same signature as with
  // the empty line (Ed25519 is deterministic), which verifies.
  const headersOnly = 'From: a@example.com\r\nSubject: headers only\r\n';
  const a = signMessage(Buffer.from(headersOnly), map, { time: 1700000000 });
  const b = signMessage(Buffer.from(headersOnly + '\r\n'), map, { time: 1700000000 });
  assert.ok(a && b);
  assert.equal(a.header, b.header);
  assert.equal((await verify(b.header + headersOnly + '\r\n', keys))[0]!.status.result, 'pass');
});

test('property: any body and header whitespace signs and verifies with mailauth', async (t) => {
  const fc = await import('fast-check');
  const keys = keyFiles(t, [{ domain: 'example.com', selector: 's', alg: 'ed25519' }]);
  const map = new Map(keys.map((k) => [k.domain, k]));
  const piece = fc.constantFrom(' ', '\t', '  ', '\r\n', '\n', 'a', 'b c', '.', 'é', '\r\n\r\n');
  const text = fc.array(piece, { maxLength: 40 }).map((a) => a.join(''));
  const headerValue = fc.array(fc.constantFrom(' ', '\t', 'x', 'y z', '\r\n '), { maxLength: 12 }).map((a) => 'v' + a.join('').replace(/\r\n $/, ''));
  await fc.assert(
    fc.asyncProperty(headerValue, text, async (subject, body) => {
      const m = Buffer.from(`From: a@example.com\r\nSubject: ${subject}\r\n\r\n${body}\r\n`, 'latin1');
      const s = signMessage(m, map);
      assert.ok(s);
      const r = await verify(Buffer.concat([Buffer.from(s.header), m]), keys);
      assert.equal(r[0]!.status.result, 'pass', r[0]!.info);
    }),
    { numRuns: 300 },
  );
});
