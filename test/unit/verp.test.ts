// VERP addresses: encode/decode round trip (escaping, case, length bound), and every kind of
// tampering (another recipient, another id, another key, a flipped tag character) refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import type { PosternError } from '../../src/errors.js';
import fc from 'fast-check';
import { decodeVerp, encodeVerp, MAX_LOCAL_PART } from '../../src/protocol/verp.js';
import { isMailbox } from '../../src/protocol/address.js';
import { loadVerpKey } from '../../src/config/verp-key.js';
import { tmpdir } from '../helpers/tmpdir.js';

const v = { domain: 'bounces.example.com', key: Buffer.from('0123456789abcdef0123456789abcdef') };
const ID = '0123456789abcdef';

test('round trip: the address names the id and the recipient (lower-cased), and is a valid mailbox', () => {
  const a = encodeVerp(v, ID, 'John.Doe@Example.ORG')!;
  assert.match(a, /^b\+0123456789abcdef\.[0-9a-v]{8}=john\.doe=example\.org@bounces\.example\.com$/);
  assert.ok(isMailbox(a), a);
  assert.deepEqual(decodeVerp(v, a), { ok: true, value: { id: ID, recipient: 'john.doe@example.org' } });
  assert.deepEqual(decodeVerp(v, a.toUpperCase()), { ok: true, value: { id: ID, recipient: 'john.doe@example.org' } }, 'a relay that upper-cases does no harm');
});

test('characters outside [a-z0-9+-.] are escaped, and come back', () => {
  for (const rcpt of ['a=b@x.test', 'a_b@x.test', "o'neil&co@x.test", 'ü@x.test', '"a..b"@x.test', 'a!b%c@x.test']) {
    const a = encodeVerp(v, ID, rcpt);
    assert.ok(a !== null, rcpt);
    assert.ok(isMailbox(a), `${rcpt} → ${a}`);
    const d = decodeVerp(v, a);
    assert.ok(d.ok, `${rcpt}: ${JSON.stringify(d)}`);
    assert.equal(d.value.recipient, rcpt.toLowerCase());
  }
});

test('the local part stays within 64 octets: a recipient too long for it gets no VERP address', () => {
  const a = encodeVerp(v, ID, `${'x'.repeat(20)}@${'y'.repeat(10)}.test`);
  assert.ok(a !== null && a.indexOf('@') === MAX_LOCAL_PART);
  assert.equal(encodeVerp(v, ID, `${'x'.repeat(21)}@${'y'.repeat(10)}.test`), null);
  assert.equal(encodeVerp(v, 'not-an-id', 'a@x.test'), null);
});

test('tampering is refused: another recipient, id, key or domain, a changed tag, junk', () => {
  const a = encodeVerp(v, ID, 'alice@x.test')!;
  const swap = a.replace('alice', 'alicf');
  assert.deepEqual(decodeVerp(v, swap), { ok: false, error: 'bad tag' });
  assert.deepEqual(decodeVerp(v, a.replace(ID, '0123456789abcdee')), { ok: false, error: 'bad tag' });
  assert.deepEqual(decodeVerp({ ...v, key: Buffer.from('another key, 32 bytes long......') }, a), { ok: false, error: 'bad tag' });
  assert.deepEqual(decodeVerp(v, a.replace('bounces.example.com', 'other.example.com')), { ok: false, error: 'not the VERP domain' });
  const at = a.indexOf('.', 2) + 1;
  for (let i = 0; i < 8; i++) {
    const c = a[at + i] === '0' ? '1' : '0';
    assert.equal(decodeVerp(v, a.slice(0, at + i) + c + a.slice(at + i + 1)).ok, false, `tag character ${i}`);
  }
  for (const junk of ['', '@', 'b+@bounces.example.com', 'alice@bounces.example.com', `b+${ID}.aaaaaaaa=a@bounces.example.com`, `b+${ID}.aaaaaaaa=a=b=c@bounces.example.com`, `b+${ID}.aaaaaaaa=_zz=x@bounces.example.com`, `b+${ID}.aaaaaaaa==x@bounces.example.com`]) {
    assert.equal(decodeVerp(v, junk).ok, false, junk);
  }
});

test('property: every encodable recipient round-trips; any one-character change is refused', () => {
  const local = fc.string({ unit: fc.constantFrom(...'abcXYZ019.+-_=!#$&\'*/?^`{|}~ü'.split('')), minLength: 1, maxLength: 20 });
  fc.assert(
    fc.property(local, fc.constantFrom('x.test', 'mail.example.org', 'a-b.c'), fc.nat(100), (l, d, pos) => {
      const rcpt = `${l}@${d}`;
      const a = encodeVerp(v, ID, rcpt);
      if (a === null) return;
      const r = decodeVerp(v, a);
      assert.ok(r.ok && r.value.recipient === rcpt.toLowerCase() && r.value.id === ID, `${rcpt} → ${a}`);
      const i = pos % a.indexOf('@');
      const c = a[i] === 'q' ? 'r' : 'q';
      const changed = a.slice(0, i) + c + a.slice(i + 1);
      const r2 = decodeVerp(v, changed);
      // A change is harmless only if it decodes to the very same thing (impossible here: q/r are plain).
      assert.ok(!r2.ok || (r2.value.id === ID && r2.value.recipient === rcpt.toLowerCase() && changed.toLowerCase() === a), `${changed} accepted`);
    }),
    { numRuns: 300 },
  );
});

test('the key: POSTERN_VERP_SECRET when set, else a 0600 file made once in the data dir and kept', (t) => {
  assert.deepEqual(loadVerpKey('a secret of sixteen+', '/nonexistent'), Buffer.from('a secret of sixteen+'));
  const dir = tmpdir(t);
  const k1 = loadVerpKey('', dir);
  assert.equal(k1.length, 32);
  assert.equal(statSync(`${dir}/verp.key`).mode & 0o777, 0o600);
  assert.deepEqual(loadVerpKey('', dir), k1, 'the same key on the next start');
  writeFileSync(`${dir}/verp.key`, 'not a key\n');
  assert.throws(() => loadVerpKey('', dir), (err: PosternError) => err.code === 'PST_ERR_CONFIG_VERP_KEY' && /verp\.key is not a VERP key/.test(err.message));
});
