// Configuration: defaults, parsing of units and lists, and the pinned error messages that
// name the variable, the value and what is allowed — all problems at once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, ConfigError } from '../../src/config/load.js';
import { SETTINGS } from '../../src/config/schema.js';

test('defaults', () => {
  const c = loadConfig({});
  assert.equal(c.smtpHost, '127.0.0.1');
  assert.equal(c.smtpPort, 2525);
  assert.equal(c.smtpsPort, null);
  assert.equal(c.dataDir, './data');
  assert.equal(c.maxMessageBytes, 25 * 1024 * 1024);
  assert.equal(c.idleTimeoutMs, 300000);
  assert.equal(c.requireTlsForAuth, true);
  assert.ok(Object.isFrozen(c));
});

test('units, booleans and lists', () => {
  const c = loadConfig({
    POSTERN_MAX_MESSAGE_BYTES: '10M',
    POSTERN_IDLE_TIMEOUT_MS: '2m',
    POSTERN_REQUIRE_TLS_FOR_AUTH: 'no',
    POSTERN_LOCAL_DOMAINS: 'Example.COM, example.org',
    POSTERN_TRUSTED_NETWORKS: '10.0.0.0/8 192.168.1.7 2001:db8::/32',
  });
  assert.equal(c.maxMessageBytes, 10 * 1024 * 1024);
  assert.equal(c.idleTimeoutMs, 120000);
  assert.equal(c.requireTlsForAuth, false);
  assert.deepEqual(c.localDomains, ['example.com', 'example.org']);
  assert.deepEqual(c.trustedNetworks, ['10.0.0.0/8', '192.168.1.7', '2001:db8::/32']);
});

test('every problem is reported at once, naming variable, value and what is allowed', () => {
  let err: unknown;
  try {
    loadConfig({ POSTERN_SMTP_PORT: 'abc', POSTERN_MAX_RECIPIENTS: '0', POSTERN_TRUSTED_NETWORKS: '10.0.0.0/33', POSTERN_LOG_LEVEL: 'loud', POSTERN_SMTP_PROT: '25' });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  assert.equal(err.code, 'PST_ERR_CONFIG_INVALID');
  assert.deepEqual(err.problems, [
    'POSTERN_SMTP_PORT="abc" is invalid: expected an integer port 0-65535',
    'POSTERN_MAX_RECIPIENTS="0" is invalid: expected an integer 1-100000',
    'POSTERN_TRUSTED_NETWORKS="10.0.0.0/33" is invalid: expected comma-separated CIDRs like 10.0.0.0/8 or ::1/128 (bad: 10.0.0.0/33)',
    'POSTERN_LOG_LEVEL="loud" is invalid: expected one of fatal, error, warn, info, debug, trace, silent',
    'POSTERN_SMTP_PROT is not a postern setting (see `postern config`)',
  ]);
});

test('cross-field checks: TLS files together, SMTPS needs them', () => {
  assert.throws(() => loadConfig({ POSTERN_TLS_CERT: '/x.pem' }), /POSTERN_TLS_CERT and POSTERN_TLS_KEY must be set together/);
  assert.throws(() => loadConfig({ POSTERN_SMTPS_PORT: '4650' }), /POSTERN_SMTPS_PORT=4650 needs POSTERN_TLS_CERT/);
  assert.throws(() => loadConfig({ POSTERN_MAX_MESSAGE_BYTES: '5 parsecs' }), /POSTERN_MAX_MESSAGE_BYTES="5 parsecs" is invalid: expected a byte count/);
});

test('every setting is documented and named POSTERN_*', () => {
  const envs = new Set<string>();
  for (const s of SETTINGS) {
    assert.match(s.env, /^POSTERN_[A-Z0-9_]+$/);
    assert.ok(s.doc.length > 10, s.env);
    assert.ok(!envs.has(s.env), `duplicate ${s.env}`);
    envs.add(s.env);
  }
  for (const required of ['POSTERN_SMTP_HOST', 'POSTERN_SMTP_PORT', 'POSTERN_SMTPS_PORT', 'POSTERN_TLS_CERT', 'POSTERN_TLS_KEY', 'POSTERN_HOSTNAME', 'POSTERN_DATA_DIR', 'POSTERN_MAX_MESSAGE_BYTES', 'POSTERN_MAX_RECIPIENTS', 'POSTERN_MAX_CONNECTIONS', 'POSTERN_MAX_CONNECTIONS_PER_IP', 'POSTERN_TRUSTED_NETWORKS', 'POSTERN_LOCAL_DOMAINS', 'POSTERN_AUTH_USERS', 'POSTERN_REQUIRE_TLS_FOR_AUTH', 'POSTERN_LOG_LEVEL']) {
    assert.ok(envs.has(required), required);
  }
});
