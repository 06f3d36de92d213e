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

test('POSTERN_MAX_BODY_MEMORY_PER_CLIENT: a quarter of POSTERN_MAX_BODY_MEMORY unless set; never more than it (pinned)', () => {
  assert.equal(loadConfig({}).maxBodyMemoryPerClient, 64 * 1024 * 1024, 'a quarter of the default 256 MiB');
  assert.equal(loadConfig({ POSTERN_MAX_BODY_MEMORY: '1G' }).maxBodyMemoryPerClient, 256 * 1024 * 1024, 'follows the total');
  assert.equal(loadConfig({ POSTERN_MAX_BODY_MEMORY: '3M' }).maxBodyMemoryPerClient, 786432);
  assert.equal(loadConfig({ POSTERN_MAX_BODY_MEMORY_PER_CLIENT: '' }).maxBodyMemoryPerClient, 64 * 1024 * 1024, 'empty is the default');
  assert.equal(loadConfig({ POSTERN_MAX_BODY_MEMORY: '8M', POSTERN_MAX_BODY_MEMORY_PER_CLIENT: '8M' }).maxBodyMemoryPerClient, 8 * 1024 * 1024, 'equal: no share');
  assert.equal(loadConfig({ POSTERN_MAX_BODY_MEMORY_PER_CLIENT: '512K' }).maxBodyMemoryPerClient, 512 * 1024);
  assert.throws(() => loadConfig({ POSTERN_MAX_BODY_MEMORY: '1M', POSTERN_MAX_BODY_MEMORY_PER_CLIENT: '2M' }), (err: ConfigError) => {
    assert.deepEqual(err.problems, ['POSTERN_MAX_BODY_MEMORY_PER_CLIENT="2M" (2097152 bytes) is more than POSTERN_MAX_BODY_MEMORY="1M" (1048576 bytes): a client\'s share is at most the whole (equal: no share)']);
    return true;
  });
  assert.throws(() => loadConfig({ POSTERN_MAX_BODY_MEMORY_PER_CLIENT: '300M' }), (err: ConfigError) => {
    assert.deepEqual(err.problems, ['POSTERN_MAX_BODY_MEMORY_PER_CLIENT="300M" (314572800 bytes) is more than POSTERN_MAX_BODY_MEMORY=268435456 (the default): a client\'s share is at most the whole (equal: no share)']);
    return true;
  });
  assert.throws(() => loadConfig({ POSTERN_MAX_BODY_MEMORY_PER_CLIENT: '1K' }), /POSTERN_MAX_BODY_MEMORY_PER_CLIENT="1K" is invalid: expected a byte count 65536-70368744177664 \(suffix K, M, G, T allowed\), or empty/);
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

test('settings that depend on each other are checked together', () => {
  assert.throws(() => loadConfig({ POSTERN_HTTP_HOST: '0.0.0.0' }), /POSTERN_HTTP_HOST=0\.0\.0\.0 without POSTERN_API_TOKEN/);
  assert.equal(loadConfig({ POSTERN_HTTP_HOST: '0.0.0.0', POSTERN_HTTP_PORT: '' }).httpHost, '0.0.0.0', 'no API, no token needed');
  assert.equal(loadConfig({ POSTERN_HTTP_HOST: '::', POSTERN_API_TOKEN: 'x'.repeat(32) }).httpHost, '::');
  assert.throws(() => loadConfig({ POSTERN_DMARC_ENFORCE: 'true' }), /POSTERN_DMARC_ENFORCE=true needs POSTERN_AUTH_RESULTS=true/);
});

test('rates, schedules, routes, scores, keys and URLs are parsed once, here, and every bad one is named', () => {
  const c = loadConfig({
    POSTERN_DEST_RATE: '100/s',
    POSTERN_HTTP_RATE: '6000/m',
    POSTERN_RETRY_SCHEDULE: '1m,1w',
    POSTERN_MAX_QUEUE_LIFETIME: '1w',
    POSTERN_ROUTES: 'example.org=lmtp:127.0.0.1:24',
    POSTERN_SMARTHOST: '[::1]:2525',
    POSTERN_SPAM_TAG_SCORE: '0.7',
    POSTERN_DKIM_KEYS: 'Example.COM:s1:/k.pem',
    POSTERN_FILTER_MODULES: '/a.js, /b.js',
  });
  assert.equal(c.destRate, 0.1);
  assert.equal(c.httpRate, 0.1);
  assert.deepEqual(c.retrySchedule, [60_000, 604_800_000]);
  assert.equal(c.maxQueueLifetimeMs, 604_800_000, 'the same duration grammar as the retry schedule');
  assert.equal(c.routes.exact.get('example.org')?.target.kind, 'lmtp');
  assert.deepEqual(c.smarthost, [{ host: '::1', port: 2525 }]);
  assert.equal(c.spamTagScore, 0.7);
  assert.equal(c.spamRejectScore, null);
  assert.deepEqual(c.dkimKeys, [{ domain: 'example.com', selector: 's1', keyFile: '/k.pem' }]);
  assert.deepEqual(c.filterModules, ['/a.js', '/b.js']);
  assert.deepEqual(loadConfig({}).retrySchedule, [300_000, 600_000, 1_200_000, 2_400_000, 3_600_000]);
  let err: unknown;
  try {
    loadConfig({ POSTERN_DEST_RATE: 'fast', POSTERN_RETRY_SCHEDULE: '5', POSTERN_ROUTES: 'x.test=ftp:h', POSTERN_SMARTHOST: '::1:25', POSTERN_SPAM_REJECT_SCORE: '2', POSTERN_DKIM_KEYS: 'nocolon', POSTERN_EVENTS_URL: 'ftp://x', POSTERN_HTTP_RATE: '0/s' });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  assert.deepEqual(err.problems, [
    'POSTERN_ROUTES="x.test=ftp:h" is invalid: route "x.test=ftp:h": unknown kind "ftp"; expected smtp, lmtp, maildir, webhook or pipe',
    'POSTERN_SMARTHOST="::1:25" is invalid: "::1:25": an IPv6 address needs brackets, like [::1]:25; expected host:port or [host]:port, comma-separated',
    'POSTERN_DEST_RATE="fast" is invalid: rate "fast" is not a count per period; expected like 100/s, 6000/m, 10/h, 5/d or 50/5m, or empty for unlimited',
    'POSTERN_RETRY_SCHEDULE="5" is invalid: retry schedule "5" has bad delays ("5"); expected comma-separated durations > 0 like 5m,10m,20m,40m,1h',
    'POSTERN_SPAM_REJECT_SCORE="2" is invalid: expected a score from 0 to 1, or empty',
    'POSTERN_DKIM_KEYS="nocolon" is invalid: entry 1 ("nocolon"): expected domain:selector:/path/to/key.pem',
    'POSTERN_EVENTS_URL="ftp://x" is invalid: expected an http:// or https:// URL, or empty',
    'POSTERN_HTTP_RATE="0/s" is invalid: rate "0/s" is not a count per period; expected like 100/s, 6000/m, 10/h, 5/d or 50/5m, or empty for unlimited',
  ]);
});

test('postern config shows parsed values in their own grammar, with URL credentials masked', async () => {
  const { describeConfig } = await import('../../src/config/load.js');
  const rows = new Map(describeConfig(loadConfig({ POSTERN_DEST_RATE: '6000/m', POSTERN_RETRY_SCHEDULE: '90s,1h30m', POSTERN_ROUTES: 'h.test=webhook:https://u:pw@127.0.0.1:9/in?k=s;*=smtp:[::1]:25/tls=none', POSTERN_EVENTS_URL: 'http://a:b@127.0.0.1/e' })).map((r) => [r.env, r.value]));
  assert.equal(rows.get('POSTERN_DEST_RATE'), '100/s');
  assert.equal(rows.get('POSTERN_RETRY_SCHEDULE'), '1m30s,1h30m');
  assert.equal(rows.get('POSTERN_ROUTES'), 'h.test=webhook:https://***@127.0.0.1:9/in?***;*=smtp:[::1]:25/tls=none');
  assert.equal(rows.get('POSTERN_EVENTS_URL'), 'http://***@127.0.0.1/e');
  assert.equal(rows.get('POSTERN_SMARTHOST'), '');
});

test('POSTERN_PROXY_TRUSTED: the network-list grammar, empty by default; its header deadline', () => {
  assert.deepEqual(loadConfig({}).proxyTrusted, []);
  assert.equal(loadConfig({}).proxyTimeoutMs, 5000);
  const c = loadConfig({ POSTERN_PROXY_TRUSTED: '10.0.0.5/32, 2001:db8::5', POSTERN_PROXY_TIMEOUT_MS: '3s' });
  assert.deepEqual(c.proxyTrusted, ['10.0.0.5/32', '2001:db8::5']);
  assert.equal(c.proxyTimeoutMs, 3000);
  assert.throws(() => loadConfig({ POSTERN_PROXY_TRUSTED: '10.0.0.5/40' }), /POSTERN_PROXY_TRUSTED="10.0.0.5\/40" is invalid: expected comma-separated CIDRs like 10.0.0.0\/8 or ::1\/128 \(bad: 10.0.0.5\/40\)/);
  assert.throws(() => loadConfig({ POSTERN_PROXY_TIMEOUT_MS: '2m' }), /POSTERN_PROXY_TIMEOUT_MS="2m" is invalid/);
});

test('POSTERN_REDIS_URL: redis:// or rediss:// with a host, checked at start-up; its password never shown', async () => {
  const { describeConfig } = await import('../../src/config/load.js');
  const c = loadConfig({ POSTERN_REDIS_URL: 'redis://:s3cret-pw@127.0.0.1:6390/2' });
  assert.equal(c.redisUrl, 'redis://:s3cret-pw@127.0.0.1:6390/2', 'the client gets the URL as given');
  assert.equal(c.redisPrefix, 'postern:');
  assert.equal(c.redisTimeoutMs, 100);
  assert.equal(c.redisLeaseMs, 15_000);
  const row = describeConfig(c).find((r) => r.env === 'POSTERN_REDIS_URL')!;
  assert.equal(row.value, 'redis://***@127.0.0.1:6390/2');
  assert.equal(loadConfig({}).redisUrl, '', 'off by default');
  for (const bad of ['http://:s3cret-pw@127.0.0.1:6379', 'redis://:s3cret-pw@127.0.0.1:6379/db', 'redis:///0', 'redis//:s3cret-pw@127.0.0.1:6379']) {
    try {
      loadConfig({ POSTERN_REDIS_URL: bad });
      assert.fail(`accepted ${bad}`);
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, /POSTERN_REDIS_URL=/);
      assert.doesNotMatch(err.message, /s3cret-pw/, 'the password in a refused URL is masked too');
    }
  }
  for (const bad of ['', 'has space', 'a{b}', 'x'.repeat(65)]) assert.throws(() => loadConfig({ POSTERN_REDIS_PREFIX: bad }), /POSTERN_REDIS_PREFIX/);
});

test('outbound AUTH needs verified TLS: a route without /tls=required, the smarthost file without POSTERN_TLS_POLICY=required (pinned)', () => {
  assert.throws(() => loadConfig({ POSTERN_ROUTES: 'a.test=smtp:r.test/auth=/etc/a;b.test=smtp:r.test/tls=none/auth=/etc/b;c.test=smtp:r.test/tls=required/auth=/etc/c', POSTERN_SMARTHOST_AUTH_FILE: '/etc/s' }), (err: Error & { problems: string[] }) => {
    assert.deepEqual(err.problems, [
      'POSTERN_ROUTES: route "a.test" has /auth= but its TLS is opportunistic (POSTERN_TLS_POLICY): AUTH needs verified TLS, add /tls=required or /tls=implicit',
      'POSTERN_ROUTES: route "b.test" has /auth= but its TLS is none: AUTH needs verified TLS, add /tls=required or /tls=implicit',
      'POSTERN_SMARTHOST_AUTH_FILE="/etc/s" needs POSTERN_SMARTHOST',
    ]);
    return true;
  });
  assert.throws(() => loadConfig({ POSTERN_SMARTHOST: 'r.test:587', POSTERN_SMARTHOST_AUTH_FILE: '/etc/s' }), /POSTERN_SMARTHOST_AUTH_FILE="\/etc\/s" needs verified TLS to the smarthost: set POSTERN_TLS_POLICY=required, or use port 465 \(implicit TLS\) \(it is opportunistic\)/);
  assert.equal(loadConfig({ POSTERN_SMARTHOST: 'r.test:465', POSTERN_SMARTHOST_AUTH_FILE: '/etc/s' }).smarthostAuthFile, '/etc/s', 'port 465 is implicit TLS');
  assert.throws(() => loadConfig({ POSTERN_SMARTHOST: 'r.test:465,r2.test:587' }), /POSTERN_SMARTHOST="r.test:465,r2.test:587" is invalid: port 465 \(implicit TLS\) is mixed with other ports; use one port/);
  const ok = loadConfig({ POSTERN_SMARTHOST: 'r.test:587', POSTERN_SMARTHOST_AUTH_FILE: '/etc/s', POSTERN_TLS_POLICY: 'required', POSTERN_ROUTES: 'a.test=smtp:r.test/auth=/etc/a' });
  assert.equal(ok.smarthostAuthFile, '/etc/s');
});

test('POSTERN_DNSSEC_RESOLVER: a resolver without a port is port 53, not SMTP\'s 25', () => {
  assert.deepEqual(loadConfig({ POSTERN_DNSSEC_RESOLVER: '127.0.0.1' }).dnssecResolver, [{ host: '127.0.0.1', port: 53 }]);
  assert.deepEqual(loadConfig({ POSTERN_DNSSEC_RESOLVER: '[::1]:5353' }).dnssecResolver, [{ host: '::1', port: 5353 }]);
  assert.deepEqual(loadConfig({ POSTERN_SMARTHOST: 'relay.test' }).smarthost, [{ host: 'relay.test', port: 25 }], 'the smarthost keeps 25');
});
