// The bounce classifier with the shipped rule file: real provider replies (Gmail, Microsoft,
// Yahoo, Spamhaus and the like) and postern's own local failures, each to its category; the
// rule file grammar and its errors; an operator's file in front of (or instead of) the shipped one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { classifyFailure, parseBounceRules, splitDiagnostic, BOUNCE_CATEGORIES, type BounceCategory, type FailureReply } from '../../src/lib/bounce-class.js';
import { loadResources, readBounceRules } from '../../src/config/resources.js';
import { loadConfig } from '../../src/config/load.js';
import { tmpdir } from '../helpers/tmpdir.js';

const shipped = readBounceRules('');

/** [reply line as received (code, enhanced, text) or a full reply, command, expected]. */
const TABLE: Array<[string, string | undefined, BounceCategory]> = [
  // Gmail
  ['550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient\'s email address for typos or unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser', 'RCPT', 'invalid-recipient'],
  ['550 5.7.26 This mail is unauthenticated, which poses a security risk to the sender and Gmail users, and has been blocked. The sender must authenticate with at least one of SPF or DKIM.', 'END-OF-DATA', 'authentication'],
  ['550-5.7.26 Unauthenticated email from example.com is not accepted due to domain\'s DMARC policy.', 'END-OF-DATA', 'authentication'],
  ['452-4.2.2 The email account that you tried to reach is over quota. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp', 'RCPT', 'mailbox-full'],
  ['552-5.2.2 The email account that you tried to reach is over quota and inactive.', 'RCPT', 'mailbox-full'],
  ['552-5.3.4 Your message exceeded Google\'s message size limits. Please visit https://support.google.com/mail/?p=MaxSizeError', 'END-OF-DATA', 'message-too-large'],
  ['421-4.7.0 This message is suspicious due to the very low reputation of the sending IP address.', 'END-OF-DATA', 'reputation'],
  ['550-5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the amount of spam sent to Gmail, this message has been blocked.', 'END-OF-DATA', 'spam-content'],
  ['421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited.', 'END-OF-DATA', 'rate-limit'],
  ['450-4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered.', 'RCPT', 'rate-limit'],
  ['550-5.7.25 The IP address sending this message does not have a PTR record setup, or the corresponding forward DNS entry does not point to the sending IP.', 'END-OF-DATA', 'policy'],
  ['421-4.7.0 TLS required for RCPT domain, closing connection.', 'RCPT', 'tls'],
  // Microsoft (Outlook.com, Exchange Online)
  ['550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.', 'MAIL', 'reputation'],
  ['550 5.7.1 Unfortunately, messages from [192.0.2.1] weren\'t sent. Please contact your Internet service provider since part of their network is on our block list (S3150).', 'MAIL', 'reputation'],
  ['550 5.7.606 Access denied, banned sending IP [192.0.2.1].', 'MAIL', 'reputation'],
  ['550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', 'RCPT', 'invalid-recipient'],
  ['550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).', 'RCPT', 'invalid-recipient'],
  ['550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification and has a DMARC policy of reject.', 'END-OF-DATA', 'authentication'],
  ['451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719)', 'MAIL', 'rate-limit'],
  ['421 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation.', 'MAIL', 'reputation'],
  // Yahoo / AOL
  ['421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes', 'MAIL', 'reputation'],
  ['553 5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying will NOT succeed.', 'MAIL', 'reputation'],
  ['554 delivery error: dd This user doesn\'t have a yahoo.com account (nobody@yahoo.com) [0] - mta1234.mail.gq1.yahoo.com', 'END-OF-DATA', 'invalid-recipient'],
  ['550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires all senders to authenticate with either SPF or DKIM.', 'END-OF-DATA', 'authentication'],
  ['451 Message temporarily deferred due to unresolvable RFC.5321 from domain', 'MAIL', 'dns'],
  // DNS blocklists
  ['554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1', 'RCPT', 'reputation'],
  ['550 5.7.1 Rejected: 192.0.2.1 listed at b.barracudacentral.org', 'RCPT', 'reputation'],
  // Postfix, Exim and generic
  ['550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table', 'RCPT', 'invalid-recipient'],
  ['550 No such user here', 'RCPT', 'invalid-recipient'],
  ['550 Unrouteable address', 'RCPT', 'invalid-recipient'],
  ['552 5.2.2 <x@example.org>: Mailbox full', 'RCPT', 'mailbox-full'],
  ['552 5.3.4 Message size exceeds fixed limit', 'END-OF-DATA', 'message-too-large'],
  ['552 Message size exceeds maximum permitted', 'END-OF-DATA', 'message-too-large'],
  ['450 4.7.1 <x@example.org>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/', 'RCPT', 'policy'],
  ['554 5.7.1 <x@example.org>: Relay access denied', 'RCPT', 'policy'],
  ['550 5.7.1 Message rejected as spam by Content Filtering.', 'END-OF-DATA', 'spam-content'],
  ['554 5.6.0 Message could not be decoded', 'END-OF-DATA', 'other'],
  ['451 4.3.0 Temporary local problem', 'END-OF-DATA', 'other'],
  ['550 5.7.23 SPF validation failed', 'END-OF-DATA', 'authentication'],
  ['452 4.5.3 Too many recipients', 'RCPT', 'rate-limit'],
];

test('shipped rules: real provider replies get their category', () => {
  const wrong: string[] = [];
  for (const [line, command, want] of TABLE) {
    const r: FailureReply = { ...splitDiagnostic(line), command };
    const got = classifyFailure(shipped, r);
    if (got !== want) wrong.push(`${line.slice(0, 80)}: ${got}, expected ${want}`);
  }
  assert.deepEqual(wrong, []);
});

test('shipped rules: postern\'s own failures (no reply from a server) get their category', () => {
  const c = (r: FailureReply) => classifyFailure(shipped, r);
  assert.equal(c({ command: 'CONNECT', text: '127.0.0.1:25: connect ECONNREFUSED 127.0.0.1:25' }), 'connection');
  assert.equal(c({ code: 421, command: 'CONNECT', text: 'greeting: too busy' }), 'connection');
  assert.equal(c({ enhanced: '4.4.2', command: 'CONNECT', text: 'connection to mx:25 lost: read ECONNRESET' }), 'connection');
  assert.equal(c({ enhanced: '4.4.1', command: 'CONNECT', text: 'destination smtp:x is backing off after repeated connection failures' }), 'connection');
  assert.equal(c({ enhanced: '4.7.0', command: 'STARTTLS', text: 'mx:25 does not offer STARTTLS and TLS is required' }), 'tls');
  assert.equal(c({ code: 451, enhanced: '4.4.3', text: 'DNS lookup failed for x.test: SERVFAIL' }), 'dns');
  assert.equal(c({ code: 550, enhanced: '5.1.2', text: 'Domain x.test does not exist (NXDOMAIN)' }), 'dns');
  assert.equal(c({ code: 556, enhanced: '5.1.10', text: 'Domain x.test accepts no mail (null MX, RFC 7505)' }), 'invalid-recipient');
  assert.equal(c({ enhanced: '4.4.0', command: 'ROUTE', text: 'no route for x.test' }), 'dns');
  assert.equal(c({ code: 550, enhanced: '5.7.1', command: 'SUPPRESSED', text: 'recipient suppressed' }), 'policy');
  assert.equal(c({ code: 554, enhanced: '5.4.6', text: 'Too many hops (more than 50 Received headers): mail loop' }), 'other');
  assert.equal(c({ enhanced: '4.4.7', text: 'delivery time expired after 5 d; last error: 452-4.2.2 The email account that you tried to reach is over quota.' }), 'mailbox-full');
  assert.equal(c({ text: '' }), 'other');
});

test('splitDiagnostic reads DSN Diagnostic-Code values and reply lines', () => {
  assert.deepEqual(splitDiagnostic('smtp; 550-5.1.1 The email account'), { code: 550, enhanced: '5.1.1', text: 'The email account' });
  assert.deepEqual(splitDiagnostic('smtp;550 5.7.1 blocked'), { code: 550, enhanced: '5.7.1', text: 'blocked' });
  assert.deepEqual(splitDiagnostic('550 user unknown'), { code: 550, text: 'user unknown' });
  assert.deepEqual(splitDiagnostic('X-Postfix; host x said: whatever'), { text: 'host x said: whatever' });
  assert.deepEqual(splitDiagnostic('5.1.10 not a code first'), { text: '5.1.10 not a code first' });
});

test('a very long text is matched only on its first 2000 characters', () => {
  assert.equal(classifyFailure(shipped, { text: `${'x'.repeat(5000)} user unknown` }), 'other');
});

test('every category of the shipped file is a known one, and every category is reachable', () => {
  const used = new Set(shipped.rules.map((r) => r.category));
  for (const c of BOUNCE_CATEGORIES) if (c !== 'other') assert.ok(used.has(c), `no shipped rule names ${c}`);
});

test('rule file errors name the file, the rule and what is allowed', () => {
  const err = (text: string) => {
    const r = parseBounceRules(text, 'r.json');
    assert.ok(!r.ok, `expected an error for ${text}`);
    return r.error;
  };
  assert.match(err('{'), /^r\.json: not JSON/);
  assert.match(err('[]'), /expected an object/);
  assert.match(err('{"rules": 1}'), /"rules" must be an array/);
  assert.match(err('{"rules": [], "extra": 1}'), /unknown key "extra"/);
  assert.match(err('{"rules": [{"category": "nope", "text": "x"}]}'), /rule 1: category "nope" is not one of invalid-recipient/);
  assert.match(err('{"rules": [{"name": "a", "category": "dns"}]}'), /rule 1 \(a\): has no condition/);
  assert.match(err('{"rules": [{"category": "dns", "text": "("}]}'), /is not a regular expression/);
  assert.match(err('{"rules": [{"category": "dns", "enhanced": "5.1"}]}'), /"enhanced" must be/);
  assert.match(err('{"rules": [{"category": "dns", "code": "6xx"}]}'), /"code" must be/);
  assert.match(err('{"rules": [{"category": "dns", "code": 550, "oops": 1}]}'), /unknown key "oops"/);
});

test('patterns: code wildcards, enhanced wildcards and leading zeros, commands case-insensitive', () => {
  const r = parseBounceRules(JSON.stringify({ rules: [
    { category: 'dns', code: ['45x'], command: 'rcpt' },
    { category: 'tls', enhanced: '*.07.*' },
    { category: 'rate-limit', code: 421 },
  ] }), 't');
  assert.ok(r.ok);
  const rules = r.value.rules;
  assert.equal(classifyFailure(rules, { code: 451, command: 'RCPT', text: '' }), 'dns');
  assert.equal(classifyFailure(rules, { code: 451, command: 'MAIL', text: '' }), 'other');
  assert.equal(classifyFailure(rules, { enhanced: '5.7.026', text: '' }), 'tls');
  assert.equal(classifyFailure(rules, { code: 421, text: '' }), 'rate-limit');
});

test('POSTERN_BOUNCE_RULES: the operator\'s rules go first; "replace" drops the shipped ones', (t) => {
  const dir = tmpdir(t);
  const mine = join(dir, 'mine.json');
  writeFileSync(mine, JSON.stringify({ rules: [{ name: 'local-quirk', category: 'rate-limit', text: 'does not exist' }] }));
  const combined = readBounceRules(mine);
  assert.equal(classifyFailure(combined, splitDiagnostic('550 5.1.1 The email account that you tried to reach does not exist.')), 'rate-limit');
  assert.equal(classifyFailure(combined, splitDiagnostic('552 5.2.2 Mailbox full')), 'mailbox-full', 'the shipped rules still follow');
  writeFileSync(mine, JSON.stringify({ replace: true, rules: [{ category: 'dns', code: '5xx' }] }));
  const only = readBounceRules(mine);
  assert.equal(only.rules.length, 1);
  assert.equal(classifyFailure(only, splitDiagnostic('452 4.2.2 Mailbox full')), 'other');
  writeFileSync(mine, '{"rules": [{"category": "x", "text": "y"}]}');
  assert.throws(() => readBounceRules(mine), /mine\.json: rule 1: category "x"/);
});

test('a bad POSTERN_BOUNCE_RULES stops start-up (and postern config) naming the variable and the rule', async (t) => {
  const bad = join(tmpdir(t), 'bad.json');
  writeFileSync(bad, '{"rules": [{"category": "dns", "text": "["}]}');
  await assert.rejects(loadResources(loadConfig({ POSTERN_BOUNCE_RULES: bad })), /POSTERN_BOUNCE_RULES=".*bad\.json" is invalid: .*bad\.json: rule 1: text "\[" is not a regular expression/);
  assert.throws(() => loadConfig({ POSTERN_SUPPRESS_ON: 'invalid-recipient,bogus' }), /POSTERN_SUPPRESS_ON has bogus: expected categories among invalid-recipient/);
  assert.throws(() => loadConfig({ POSTERN_VERP: 'not a domain' }), /POSTERN_VERP="not a domain" is invalid/);
  assert.throws(() => loadConfig({ POSTERN_BOUNCE_ADDRESSES: 'fbl@elsewhere.test' }), /POSTERN_BOUNCE_ADDRESSES has fbl@elsewhere\.test: not in POSTERN_LOCAL_DOMAINS/);
  assert.throws(() => loadConfig({ POSTERN_VERP_SECRET: 'short' }), /POSTERN_VERP_SECRET is too short/);
});
