// Per-client connection counting: IPv4 by address, IPv6 by prefix (POSTERN_IPV6_PREFIX).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientKey } from '../../src/lib/networks.js';

test('IPv6 addresses of one /64 share a key; another /64 does not', () => {
  const a = clientKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd', 64);
  assert.equal(a, '2001:db8:1:2:0:0:0:0/64');
  assert.equal(clientKey('2001:db8:1:2::1', 64), a);
  assert.equal(clientKey('2001:DB8:1:2:ffff::', 64), a);
  assert.equal(clientKey('2001:0db8:0001:0002:0:0:0:9%eth0', 64), a);
  assert.notEqual(clientKey('2001:db8:1:3::1', 64), a);
  assert.equal(clientKey('::1', 64), '0:0:0:0:0:0:0:0/64');
  assert.equal(clientKey('64:ff9b::192.0.2.33', 96), '64:ff9b:0:0:0:0:0:0/96');
  assert.equal(clientKey('64:ff9b::192.0.2.33', 112), '64:ff9b:0:0:0:0:c000:0/112');
});

test('prefix lengths that are not multiples of 16, and /128', () => {
  assert.equal(clientKey('2001:db8:1:2:3:4:5:6', 56), '2001:db8:1:0:0:0:0:0/56');
  assert.equal(clientKey('2001:db8:1:2ff:3:4:5:6', 56), '2001:db8:1:200:0:0:0:0/56');
  assert.equal(clientKey('2001:db8:ffff:2:3:4:5:6', 36), '2001:db8:f000:0:0:0:0:0/36');
  assert.equal(clientKey('2001:db8::6', 128), '2001:db8::6');
});

test('IPv4, IPv4-mapped IPv6 and anything else are counted by address', () => {
  assert.equal(clientKey('192.0.2.7', 64), '192.0.2.7');
  assert.equal(clientKey('::ffff:192.0.2.7', 64), '192.0.2.7');
  assert.equal(clientKey('', 64), '');
});
