// POSTERN_ROUTES and the smarthost: the grammar, pinned error messages, matching order (exact,
// longest "*.suffix", "*"), and destinationFor's order route → smarthost → literal → MX.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRoutes, matchRoute, parseHostPort, parseSmarthost, formatHostPort, type RouteTable } from '../../src/config/routes.js';
import { success, valueOf } from '../../src/lib/result.js';
import { MxResolver, destinationFor, siteKey, type DnsResolver } from '../../src/delivery/mx.js';

function table(spec: string): RouteTable {
  const t = parseRoutes(spec);
  if (!t.ok) assert.fail(t.error);
  return t.value;
}

const EXAMPLE = `example.org=lmtp:127.0.0.1:24;*.corp.test=smtp:127.0.0.1:2600;local.test=maildir:/var/mail;
  hooks.test=webhook:http://127.0.0.1:9000/in;big.test=smtp:[10.0.0.1]:25,mx2.big.test:2525`;

test('the example spec parses into the documented targets', () => {
  const t = table(EXAMPLE);
  assert.equal(t.routes.length, 5);
  assert.deepEqual(matchRoute(t, 'example.org')?.target, { kind: 'lmtp', hosts: [{ host: '127.0.0.1', port: 24 }] });
  assert.deepEqual(matchRoute(t, 'a.corp.test')?.target, { kind: 'smtp', hosts: [{ host: '127.0.0.1', port: 2600 }] });
  assert.deepEqual(matchRoute(t, 'local.test')?.target, { kind: 'maildir', root: '/var/mail' });
  assert.deepEqual(matchRoute(t, 'hooks.test')?.target, { kind: 'webhook', url: 'http://127.0.0.1:9000/in' });
  assert.deepEqual(matchRoute(t, 'big.test')?.target, { kind: 'smtp', hosts: [{ host: '10.0.0.1', port: 25 }, { host: 'mx2.big.test', port: 2525 }] });
  assert.equal(matchRoute(t, 'other.test'), undefined);
  assert.equal(matchRoute(t, 'corp.test'), undefined, '*.corp.test covers subdomains only');
  assert.ok(Object.isFrozen(t) && Object.isFrozen(t.routes[0]));
});

test('default ports, IPv6 brackets, TLS suffix, case and trailing dots, newline separators', () => {
  const t = table('A.Example.=smtp:MX.Example.:587/tls=required\n b.test = lmtp:[::1],[IPv6:2001:db8::5]:2424/tls=none ;; c.test=smtp:c1,c2 ;');
  assert.deepEqual(matchRoute(t, 'a.example')?.target, { kind: 'smtp', hosts: [{ host: 'mx.example', port: 587 }], tlsPolicy: 'required' });
  assert.deepEqual(matchRoute(t, 'B.TEST.')?.target, { kind: 'lmtp', hosts: [{ host: '::1', port: 24 }, { host: '2001:db8::5', port: 2424 }], tlsPolicy: 'none' });
  assert.deepEqual(matchRoute(t, 'c.test')?.target, { kind: 'smtp', hosts: [{ host: 'c1', port: 25 }, { host: 'c2', port: 25 }] });
  assert.deepEqual(table('').routes, []);
});

test('matching: exact, then the longest wildcard, then the catch-all', () => {
  const t = table('*=smtp:all;*.test=smtp:t;*.b.test=smtp:bt;a.b.test=smtp:exact');
  const hostOf = (d: string): string | undefined => {
    const r = matchRoute(t, d)?.target;
    return r?.kind === 'smtp' ? r.hosts[0]!.host : undefined;
  };
  assert.equal(hostOf('a.b.test'), 'exact');
  assert.equal(hostOf('x.a.b.test'), 'bt');
  assert.equal(hostOf('c.b.test'), 'bt');
  assert.equal(hostOf('b.test'), 't');
  assert.equal(hostOf('test'), 'all');
  assert.equal(hostOf('example.com'), 'all');
});

test('every bad entry is reported, naming the entry and what is allowed (pinned)', () => {
  const r = parseRoutes('ok.test=smtp:h; nope; x.test=ftp:h; y.test=smtp:::1; z.test=smtp:h:0; w.test=smtp:h/tls=maybe; ok.test=lmtp:h; -bad-.test=smtp:h; m.test=maildir:var/mail; u.test=webhook:ftp://h/; e.test=smtp:');
  assert.ok(!r.ok);
  assert.deepEqual(r.error.split('; route '), [
    'route "nope": expected domain=kind:target (kind smtp, lmtp, maildir, webhook or pipe)',
    '"x.test=ftp:h": unknown kind "ftp"; expected smtp, lmtp, maildir, webhook or pipe',
    '"y.test=smtp:::1": "::1": an IPv6 address needs brackets, like [::1]:25; smtp takes host[:port] or [host]:port, comma-separated',
    '"z.test=smtp:h:0": "h:0": port "0" is not 1-65535; smtp takes host[:port] or [host]:port, comma-separated',
    '"w.test=smtp:h/tls=maybe": "/tls=maybe" is not a TLS policy; expected /tls=opportunistic|required|none|implicit',
    '"ok.test=lmtp:h": ok.test already has a route; each domain pattern may appear once',
    '"-bad-.test=smtp:h": domain "-bad-.test" is not a domain, "*.domain" or "*"',
    '"m.test=maildir:var/mail": maildir needs an absolute path, like maildir:/var/mail',
    '"u.test=webhook:ftp://h/": webhook needs an http:// or https:// URL',
    '"e.test=smtp:": smtp needs one or more host[:port], comma-separated',
  ]);
});

test('parseHostPort and formatHostPort', () => {
  assert.deepEqual(parseHostPort('mx.example'), success({ host: 'mx.example', port: 25 }));
  assert.deepEqual(parseHostPort('mx.example:2525', 24), success({ host: 'mx.example', port: 2525 }));
  assert.deepEqual(parseHostPort('[10.1.2.3]', 24), success({ host: '10.1.2.3', port: 24 }));
  assert.deepEqual(parseHostPort('[2001:DB8::1]:587'), success({ host: '2001:db8::1', port: 587 }));
  assert.deepEqual(parseHostPort('[relay.example]:587'), success({ host: 'relay.example', port: 587 }));
  assert.equal(formatHostPort({ host: '2001:db8::1', port: 587 }), '[2001:db8::1]:587');
  assert.equal(formatHostPort({ host: 'relay.example', port: 25 }), 'relay.example:25');
  for (const bad of ['', 'a b', '[::1', '[::1]x', 'h:', 'h:65536', 'h:-1', 'h:2x', 'under_score.test', '::1:25']) {
    assert.ok(!parseHostPort(bad).ok, bad);
  }
});

test('parseSmarthost: one or more hosts, empty is none, errors say what is allowed', () => {
  assert.deepEqual(parseSmarthost('relay.example.net:587'), success([{ host: 'relay.example.net', port: 587 }]));
  assert.deepEqual(parseSmarthost('[10.0.0.1], [2001:db8::1]:2525'), success([{ host: '10.0.0.1', port: 25 }, { host: '2001:db8::1', port: 2525 }]));
  assert.deepEqual(parseSmarthost('  '), success(null));
  assert.deepEqual(parseSmarthost('relay:99999'), { ok: false, error: '"relay:99999": port "99999" is not 1-65535; expected host:port or [host]:port, comma-separated' });
});

/** DNS that must not be asked: routes, the smarthost and literals never reach it. */
const noDns: DnsResolver = {
  resolveMx: () => assert.fail('no MX lookup expected'),
  resolve4: () => assert.fail('no A lookup expected'),
  resolve6: () => assert.fail('no AAAA lookup expected'),
};

test('destinationFor: a route wins over the smarthost, which wins over MX', async () => {
  const routes = table(EXAMPLE + ';tls.test=smtp:b.mx,a.mx/tls=required');
  const ctx = { routes, smarthost: null, tlsPolicy: 'opportunistic' as const, mx: new MxResolver(noDns) };
  assert.deepEqual(await destinationFor('Example.ORG', ctx), { kind: 'lmtp', key: 'lmtp:127.0.0.1:24', hosts: [{ host: '127.0.0.1', port: 24 }], tlsPolicy: 'opportunistic' });
  assert.deepEqual(await destinationFor('local.test', ctx), { kind: 'maildir', key: 'maildir:/var/mail', root: '/var/mail' });
  assert.deepEqual(await destinationFor('hooks.test', ctx), { kind: 'webhook', key: 'webhook:http://127.0.0.1:9000/in', url: 'http://127.0.0.1:9000/in' });
  // The key sorts the hosts and names a non-default policy; the hosts keep their order.
  assert.deepEqual(await destinationFor('tls.test', ctx), { kind: 'smtp', key: 'smtp:a.mx:25,b.mx:25/tls=required', hosts: [{ host: 'b.mx', port: 25 }, { host: 'a.mx', port: 25 }], tlsPolicy: 'required' });

  const viaRelay = { ...ctx, smarthost: valueOf(parseSmarthost('[2001:db8::1]:587')), tlsPolicy: 'required' as const };
  assert.deepEqual(await destinationFor('elsewhere.test', viaRelay), { kind: 'smtp', key: 'smtp:[2001:db8::1]:587/tls=required', hosts: [{ host: '2001:db8::1', port: 587 }], tlsPolicy: 'required' });
  assert.equal((await destinationFor('big.test', viaRelay)).key, 'smtp:10.0.0.1:25,mx2.big.test:2525/tls=required', 'the route still wins; it inherits the global policy');
});

test('destinationFor: address literals go straight to the address; bad ones bounce', async () => {
  const ctx = { routes: table(''), smarthost: null, tlsPolicy: 'opportunistic' as const, mx: new MxResolver(noDns) };
  assert.deepEqual(await destinationFor('[192.0.2.7]', ctx), { kind: 'smtp', key: 'smtp:192.0.2.7:25', hosts: [{ host: '192.0.2.7', port: 25 }], tlsPolicy: 'opportunistic' });
  assert.equal((await destinationFor('[IPv6:2001:db8::7]', ctx)).key, 'smtp:[2001:db8::7]:25');
  const bad = await destinationFor('[not.an.ip]', ctx);
  assert.equal(bad.kind, 'bounce');
  assert.equal(bad.kind === 'bounce' && bad.reply.enhanced, '5.1.2');
});

test('siteKey ignores host order and duplicates', () => {
  const a = siteKey('smtp', [{ host: 'b', port: 25 }, { host: 'a', port: 25 }, { host: 'b', port: 25 }], 'opportunistic');
  assert.equal(a, 'smtp:a:25,b:25');
  assert.equal(siteKey('smtp', [{ host: 'a', port: 25 }, { host: 'b', port: 25 }], 'none'), 'smtp:a:25,b:25/tls=none');
});

test('/auth=: a path that may hold "/", with /tls= before or after; keyed apart; refused where it means nothing (pinned)', async () => {
  const t = table('a.test=smtp:relay.test:587/tls=required/auth=/etc/postern/relay.auth;b.test=smtp:relay.test:587/auth=/etc/postern/b.auth/tls=required');
  assert.deepEqual(matchRoute(t, 'a.test')?.target, { kind: 'smtp', hosts: [{ host: 'relay.test', port: 587 }], tlsPolicy: 'required', auth: '/etc/postern/relay.auth' });
  assert.deepEqual(matchRoute(t, 'b.test')?.target, { kind: 'smtp', hosts: [{ host: 'relay.test', port: 587 }], tlsPolicy: 'required', auth: '/etc/postern/b.auth' });
  const ctx = { routes: t, smarthost: null, tlsPolicy: 'opportunistic' as const, mx: new MxResolver(noDns) };
  const a = await destinationFor('a.test', ctx);
  assert.deepEqual(a, { kind: 'smtp', key: 'smtp:relay.test:587/tls=required/auth=/etc/postern/relay.auth', hosts: [{ host: 'relay.test', port: 587 }], tlsPolicy: 'required', auth: '/etc/postern/relay.auth' });
  assert.notEqual((await destinationFor('b.test', ctx)).key, a.key, 'other credentials, another pool');
  const relay = { ...ctx, routes: table(''), smarthost: valueOf(parseSmarthost('relay.test:587')), tlsPolicy: 'required' as const, smarthostAuth: '/etc/postern/s.auth' };
  assert.deepEqual(await destinationFor('x.test', relay), { kind: 'smtp', key: 'smtp:relay.test:587/tls=required/auth=/etc/postern/s.auth', hosts: [{ host: 'relay.test', port: 587 }], tlsPolicy: 'required', auth: '/etc/postern/s.auth' });
  const bad = parseRoutes('c.test=smtp:h/auth=relative; d.test=lmtp:h/auth=/x; e.test=smtp:h/foo=1');
  assert.ok(!bad.ok);
  assert.deepEqual(bad.error.split('; route '), [
    'route "c.test=smtp:h/auth=relative": "/auth=relative" needs an absolute path to a credentials file, like /auth=/etc/postern/relay.auth',
    '"d.test=lmtp:h/auth=/x": "/auth=/x" is not an option of lmtp; expected /tls=opportunistic|required|none',
    '"e.test=smtp:h/foo=1": "/foo=1" is not an option of smtp; expected /tls=policy or /auth=/path',
  ]);
});

test('implicit TLS: /tls=implicit on smtp; port 465 means implicit unless told otherwise; refused where it cannot be (pinned)', async () => {
  const t = table('a.test=smtp:relay.test:465;b.test=smtp:relay.test:2465/tls=implicit;c.test=smtp:r1.test:465,r2.test:587/tls=implicit');
  assert.deepEqual(matchRoute(t, 'a.test')?.target, { kind: 'smtp', hosts: [{ host: 'relay.test', port: 465 }], tlsPolicy: 'implicit' });
  assert.equal((matchRoute(t, 'b.test')?.target as { tlsPolicy?: string }).tlsPolicy, 'implicit');
  const ctx = { routes: t, smarthost: null, tlsPolicy: 'opportunistic' as const, mx: new MxResolver(noDns) };
  assert.equal((await destinationFor('a.test', ctx)).key, 'smtp:relay.test:465/tls=implicit');
  const relay = { ...ctx, routes: table(''), smarthost: valueOf(parseSmarthost('relay.test:465')), smarthostTlsPolicy: 'implicit' as const };
  assert.deepEqual(await destinationFor('x.test', relay), { kind: 'smtp', key: 'smtp:relay.test:465/tls=implicit', hosts: [{ host: 'relay.test', port: 465 }], tlsPolicy: 'implicit' });
  const bad = parseRoutes('d.test=smtp:h:465/tls=required; e.test=smtp:h:465,h:25; f.test=lmtp:h/tls=implicit');
  assert.ok(!bad.ok);
  assert.deepEqual(bad.error.split('; route '), [
    'route "d.test=smtp:h:465/tls=required": port 465 is implicit TLS (RFC 8314), not /tls=required; use /tls=implicit or another port',
    '"e.test=smtp:h:465,h:25": port 465 (implicit TLS) is mixed with other ports; say /tls=implicit or /tls=required',
    '"f.test=lmtp:h/tls=implicit": "/tls=implicit" is not a TLS policy; expected /tls=opportunistic|required|none',
  ]);
});
