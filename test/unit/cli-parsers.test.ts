// The command line's pure parts: the sendmail option parser (getopt-style), the environment
// file reader (systemd EnvironmentFile lines), sendmail's input end and line ends, and the
// message it completes (-t recipients, Bcc removed, From/Date/Message-ID added).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSendmailArgs } from '../../src/cli/sendmail-args.js';
import { parseEnvFile } from '../../src/config/env-file.js';
import { InputReader, addressesOf, argumentAddresses, isSubmittable, prepareMessage, rfc5322Date, toCrlf } from '../../src/cli/sendmail-message.js';
import { ConfigError } from '../../src/config/load.js';

test('sendmail options: attached and separate values, grouped flags, -o and -b words, the first operand ends the options', () => {
  const r = parseSendmailArgs(['-FCronDaemon', '-i', '-B8BITMIME', '-oem', '-f', 'root@h.example', 'user@x.example', '-t']);
  assert.ok(r.ok);
  assert.deepEqual(r.args, {
    mode: 'submit', extract: false, ignoreDots: true, verbose: false, help: false,
    fullName: 'CronDaemon', bodyType: '8BITMIME', sender: 'root@h.example',
    recipients: ['user@x.example', '-t'], // after the first recipient nothing is an option (getopt)
  });
  const t = parseSendmailArgs(['-ti', '-oi', '-fa@b.example', '-N', 'success,delay', '-R', 'hdrs', '-V', 'env-1', '--', '-x@y.example']);
  assert.ok(t.ok);
  assert.equal(t.args.extract, true);
  assert.equal(t.args.ignoreDots, true);
  assert.equal(t.args.sender, 'a@b.example');
  assert.equal(t.args.notify, 'SUCCESS,DELAY');
  assert.equal(t.args.ret, 'HDRS');
  assert.equal(t.args.envid, 'env-1');
  assert.deepEqual(t.args.recipients, ['-x@y.example']);
  const bs = parseSendmailArgs(['-bs']);
  assert.ok(bs.ok && bs.args.mode === 'smtp');
  const bp = parseSendmailArgs(['-bp']);
  assert.ok(bp.ok && bp.args.mode === 'list');
  const nul = parseSendmailArgs(['-f', '<>', 'a@b']);
  assert.ok(nul.ok && nul.args.sender === '', '-f <> is the null sender');
  const c = parseSendmailArgs(['-C', '/etc/x.env', '-h', '10', '-L', 'tag', '-odq', '-U', 'a@b']);
  assert.ok(c.ok && c.args.envFile === '/etc/x.env' && c.args.recipients[0] === 'a@b');
  for (const [argv, re] of [
    [['-q'], /unknown option -q/],
    [['-f'], /option -f needs a value/],
    [['-bd'], /-bd is not supported/],
    [['-oX'], /-oX is not supported/],
    [['--frobnicate'], /unknown option --frobnicate/],
    [['-f', 'a@b>\r\nRSET'], /is not an address/],
    [['-B', 'BINARYMIME'], /7BIT or 8BITMIME/],
    [['-N', 'sometimes'], /never, or one or more/],
  ] as const) {
    const bad = parseSendmailArgs([...argv]);
    assert.ok(!bad.ok, argv.join(' '));
    assert.match(bad.error, re);
  }
});

test('environment file: comments, quotes, escapes, continuations; a bad line names file:line', () => {
  const vars = parseEnvFile([
    '# comment',
    '; also a comment',
    '',
    'POSTERN_SMTP_PORT=2600',
    '  POSTERN_HOSTNAME = mx.example  ',
    "POSTERN_ROUTES='a=b;c=d'",
    'POSTERN_API_TOKEN="se\\"cret\\\\x"',
    'POSTERN_LOCAL_DOMAINS=a.example,\\',
    '  b.example',
    'EMPTY=',
  ].join('\n'), 'x.env');
  assert.deepEqual(vars, {
    POSTERN_SMTP_PORT: '2600',
    POSTERN_HOSTNAME: 'mx.example',
    POSTERN_ROUTES: 'a=b;c=d',
    POSTERN_API_TOKEN: 'se"cret\\x',
    POSTERN_LOCAL_DOMAINS: 'a.example,b.example',
    EMPTY: '',
  });
  assert.throws(() => parseEnvFile('OK=1\nexport X=1\nnot a line\n', 'y.env'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.deepEqual(err.problems, ['y.env:2: not KEY=VALUE', 'y.env:3: not KEY=VALUE']);
    return true;
  });
});

function readAll(chunks: string[], ignoreDots: boolean, max = 1e6): { text: string; tooBig: boolean; stopped: number } {
  const r = new InputReader(ignoreDots, max);
  let stopped = -1;
  for (let i = 0; i < chunks.length; i++) {
    if (r.push(Buffer.from(chunks[i]!, 'latin1'))) {
      stopped = i;
      break;
    }
  }
  return { text: r.tooBig ? '' : r.message().toString('latin1'), tooBig: r.tooBig, stopped };
}

test('sendmail input: a lone "." ends it without -i, in any chunking; with -i it is text; line ends become CRLF', () => {
  const input = 'Subject: x\n\nline1\n.\nline2\n';
  for (let cut = 0; cut <= input.length; cut++) {
    for (let cut2 = cut; cut2 <= input.length; cut2 += 3) {
      const r = readAll([input.slice(0, cut), input.slice(cut, cut2), input.slice(cut2)], false);
      assert.equal(r.text, 'Subject: x\r\n\r\nline1\r\n', `cuts ${cut}/${cut2}`);
      assert.notEqual(r.stopped, -1, 'reading stops at the "." line (stdin may stay open)');
    }
  }
  assert.equal(readAll(['.\r\nrest'], false).text, '\r\n', 'a "." first line ends an empty input');
  assert.equal(readAll([input], true).text, 'Subject: x\r\n\r\nline1\r\n.\r\nline2\r\n');
  assert.equal(readAll(['a\n..\n.b\n'], false).text, 'a\r\n..\r\n.b\r\n', 'only a lone "." ends it');
  assert.equal(toCrlf(Buffer.from('a\rb\r\nc\nd')).toString(), 'a\r\nb\r\nc\r\nd\r\n', 'bare CR and LF become CRLF, a last line gets one');
  assert.equal(readAll(['x'.repeat(10), 'y'.repeat(10)], true, 15).tooBig, true);
});

test('sendmail message: -t takes To, Cc and Bcc, Bcc is removed, missing From/Date/Message-ID are added', () => {
  const msg = toCrlf(Buffer.from('To: "A, Person" <a@x.example>, root\nCc: b@y.example\nBcc: hidden@z.example,\n  other@z.example\nSubject: s\n\nbody\n'));
  const p = prepareMessage(msg, { extract: true, sender: 'cron@h.example', fullName: 'Cron Daemon', hostname: 'h.example', now: new Date(Date.UTC(2026, 11, 7, 5, 3, 43)) });
  assert.deepEqual(p.headerRecipients, ['a@x.example', 'root@h.example', 'b@y.example', 'hidden@z.example', 'other@z.example']);
  const text = p.message.toString();
  assert.doesNotMatch(text, /Bcc|hidden|other@/i);
  assert.match(text, /^To: "A, Person" <a@x\.example>, root\r\nCc: b@y\.example\r\nSubject: s\r\nFrom: "Cron Daemon" <cron@h\.example>\r\nDate: \w{3}, \d+ Dec 2026 \d\d:\d\d:43 [+-]\d{4}\r\nMessage-ID: <[0-9a-z]+\.[0-9a-f]{16}@h\.example>\r\n\r\nbody\r\n$/);
  const kept = prepareMessage(toCrlf(Buffer.from('From: me@x.example\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <a@b>\n\nhi\n')), { extract: false, sender: 's@x.example', hostname: 'h.example' });
  assert.equal(kept.message.toString(), 'From: me@x.example\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <a@b>\r\n\r\nhi\r\n', 'nothing added when present');
  const noHeader = prepareMessage(toCrlf(Buffer.from('just a line\n')), { extract: false, sender: 's@x.example', hostname: 'h.example' });
  assert.match(noHeader.message.toString(), /^From: <s@x\.example>\r\nDate: .*\r\nMessage-ID: .*\r\n\r\njust a line\r\n$/, 'a message without a header gets one');
  const bytes = Buffer.from('Subject: caf\xe9\r\n\r\n\xff\r\n', 'latin1');
  const eight = prepareMessage(bytes, { extract: false, sender: 's@x.example', hostname: 'h.example' });
  assert.ok(eight.message.includes(Buffer.from('Subject: caf\xe9\r\n', 'latin1')) && eight.message.includes(Buffer.from('\r\n\xff\r\n', 'latin1')), '8-bit bytes kept as they are');
  assert.equal(rfc5322Date(new Date(0)).length > 20, true);
  assert.deepEqual(addressesOf('undisclosed-recipients:;'), []);
  assert.deepEqual(argumentAddresses('a@x.example, "Doe, J" <j@y.example>,root'), ['a@x.example', 'j@y.example', 'root']);
  assert.deepEqual(argumentAddresses('a@b.example>\r\nRSET'), ['a@b.example>\r\nRSET'], 'taken as written, for isSubmittable to refuse');
  assert.equal(isSubmittable('a@b.example'), true);
  assert.equal(isSubmittable('a@b>\r\nDATA'), false);
  assert.equal(isSubmittable('a b@c'), false);
});
