// `postern sendmail` and the postern-sendmail bin against a real node on loopback: recipients
// as arguments, -t with Bcc removed, -f/-F, -i against a lone ".", 8-bit input, the headers a
// local submission gets, all-or-nothing refusals, exit 75 when the node is down, and -bs
// passing SMTP through stdin and stdout.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { cleanEnv, runCli } from '../helpers/cli.js';
import { startTestNode } from '../helpers/node.js';
import type { PosternNode } from '../../src/main.js';

const SENDMAIL_BIN = fileURLToPath(new URL('../../../dist/sendmail.js', import.meta.url));

function envOf(node: PosternNode): Record<string, string> {
  return { POSTERN_SMTP_PORT: String(node.ports.smtpPort), POSTERN_HOSTNAME: 'mx.test.example', POSTERN_DATA_DIR: node.config.dataDir, POSTERN_QUEUE_MAP_BYTES: '64M' };
}

/** Every queued message with its body, oldest first. */
function queued(node: PosternNode): { sender: string; recipients: string[]; body: string; bodyType: string | undefined }[] {
  return node.queue.list(100).map((m) => ({
    sender: m.sender,
    recipients: m.recipients.map((r) => r.address),
    body: node.queue.withBody(m.id, (b) => b.toString('latin1')),
    bodyType: m.bodyType,
  }));
}

/** The message as the node stored it, without the Received header it added. */
const withoutReceived = (body: string): string => body.replace(/^Received: [^]*?\r\n(?![ \t])/, '');

async function freshNode(t: TestContext): Promise<PosternNode> {
  return startTestNode(t, { POSTERN_HOSTNAME: 'mx.test.example' });
}

test('sendmail: recipients as arguments, the sender and the headers a local submission lacks', async (t) => {
  const node = await freshNode(t);
  const r = await runCli(['sendmail', '-i', 'a@x.example', 'b@y.example, root'], envOf(node), 'Subject: hello\nX-Kind: cron\n\nline 1\nline 2\n');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout + r.stderr, '', 'silent on success');
  const [m] = queued(node);
  assert.ok(m);
  assert.deepEqual(m.recipients, ['a@x.example', 'b@y.example', 'root@mx.test.example'], 'a bare name is a user of this host');
  assert.match(m.sender, /^[^@\s]+@mx\.test\.example$/, 'the default sender: the user @POSTERN_HOSTNAME');
  const body = withoutReceived(m.body);
  assert.match(body, new RegExp(`^Subject: hello\\r\\nX-Kind: cron\\r\\nFrom: <${m.sender.replace(/[.]/g, '\\.')}>\\r\\nDate: [A-Z][a-z]{2}, \\d{1,2} [A-Z][a-z]{2} \\d{4} \\d\\d:\\d\\d:\\d\\d [+-]\\d{4}\\r\\nMessage-ID: <[^@>]+@mx\\.test\\.example>\\r\\n\\r\\nline 1\\r\\nline 2\\r\\n$`));
});

test('sendmail -t: recipients from To, Cc and Bcc (and the arguments), Bcc removed; -f and -F; -oi and -fADDR forms', async (t) => {
  const node = await freshNode(t);
  const msg = 'From: Web <web@site.example>\nTo: "Doe, J" <j@x.example>\nCc: k@y.example\nBcc: secret@z.example,\n hidden@z.example\nSubject: t\n\nbody\n';
  const r = await runCli(['sendmail', '-t', '-i', '-f', 'bounce@site.example', 'extra@w.example'], envOf(node), msg);
  assert.equal(r.code, 0, r.stderr);
  const [m] = queued(node);
  assert.ok(m);
  assert.equal(m.sender, 'bounce@site.example');
  assert.deepEqual(m.recipients, ['extra@w.example', 'j@x.example', 'k@y.example', 'secret@z.example', 'hidden@z.example']);
  assert.doesNotMatch(m.body, /^Bcc:|secret@|hidden@/im, 'Bcc never leaves with the message');
  assert.match(m.body, /\r\nFrom: Web <web@site\.example>\r\nTo: "Doe, J" <j@x\.example>\r\nCc: k@y\.example\r\nSubject: t\r\n/);

  // cron's habits: -FCronDaemon -oi -fADDR glued to their values, -oem, -B8BITMIME.
  const cron = await runCli(['sendmail', '-FCron Daemon', '-oi', '-froot@h.example', '-B8BITMIME', '-oem', 'ops@x.example'], envOf(node), 'Subject: cron\n\nok\n');
  assert.equal(cron.code, 0, cron.stderr);
  const c = queued(node)[1]!;
  assert.equal(c.sender, 'root@h.example');
  assert.match(c.body, /\r\nFrom: "Cron Daemon" <root@h\.example>\r\n/);

  const none = await runCli(['sendmail', '-t'], envOf(node), 'Subject: nobody\n\nx\n');
  assert.equal(none.code, 65, 'no recipients in the headers: bad data');
  assert.match(none.stderr, /no recipients in To, Cc or Bcc/);
  const noArgs = await runCli(['sendmail'], envOf(node), 'x\n');
  assert.equal(noArgs.code, 64);
  const injected = await runCli(['sendmail', 'a@b.example>\r\nRSET'], envOf(node), 'x\n');
  assert.equal(injected.code, 64, 'an argument that is no address is refused before anything is sent');
  assert.equal(queued(node).length, 2);
});

test('sendmail: without -i a lone "." ends the message; with -i it is text and is sent dot-stuffed; 8-bit input is sent as 8BITMIME', async (t) => {
  const node = await freshNode(t);
  const input = 'Subject: dots\n\nbefore\n..two\n.\nafter\n';
  const r1 = await runCli(['sendmail', 'a@x.example'], envOf(node), input);
  assert.equal(r1.code, 0, r1.stderr);
  const r2 = await runCli(['sendmail', '-i', 'a@x.example'], envOf(node), input);
  assert.equal(r2.code, 0, r2.stderr);
  const [cut, whole] = queued(node);
  assert.match(cut!.body, /\r\n\r\nbefore\r\n\.\.two\r\n$/, 'the "." line ended it; "..two" is text');
  assert.match(whole!.body, /\r\n\r\nbefore\r\n\.\.two\r\n\.\r\nafter\r\n$/, 'with -i the lone "." arrives as a line of its own');
  const r3 = await runCli(['sendmail', '-i', 'a@x.example'], envOf(node), Buffer.from('Subject: caf\xe9\n\nna\xefve\n', 'latin1').toString('latin1'));
  assert.equal(r3.code, 0, r3.stderr);
  const eight = queued(node)[2]!;
  assert.equal(eight.bodyType, '8BITMIME');
});

test('sendmail: the node down is exit 75 (retry later), a refused recipient queues nothing (67), -bs speaks SMTP through stdin/stdout', async (t) => {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  const down = await runCli(['sendmail', '-i', 'a@x.example'], { POSTERN_SMTP_PORT: String(port) }, 'Subject: x\n\nhi\n');
  assert.equal(down.code, 75, down.stderr);
  assert.match(down.stderr, /the node is not running .*ECONNREFUSED.*nothing was queued, try again later/);
  const downBs = await runCli(['sendmail', '-bs'], { POSTERN_SMTP_PORT: String(port) }, 'EHLO x\r\n');
  assert.equal(downBs.code, 75);
  assert.match(downBs.stdout, /^421 4\.3\.2 /);

  // A node that refuses a recipient for good (a recipient map): nothing is queued for anyone.
  const node = await startTestNode(t, { POSTERN_HOSTNAME: 'mx.test.example', POSTERN_LOCAL_DOMAINS: 'local.example', POSTERN_TRUSTED_NETWORKS: '10.0.0.0/8' });
  const refused = await runCli(['sendmail', '-i', 'ok@local.example', 'far@elsewhere.example'], envOf(node), 'Subject: x\n\nhi\n');
  assert.equal(refused.code, 67, refused.stderr);
  assert.match(refused.stderr, /recipient <far@elsewhere\.example> refused: 5\d\d .*nothing was queued/);
  assert.equal(queued(node).length, 0, 'all or nothing: ok@local.example got nothing either');

  // -bs through the postern-sendmail bin, a command at a time as an SMTP client speaks.
  const child = spawn(process.execPath, [SENDMAIL_BIN, '-bs'], { env: cleanEnv(envOf(node)), stdio: ['pipe', 'pipe', 'pipe'] });
  const script = ['EHLO client.example', 'MAIL FROM:<s@local.example>', 'RCPT TO:<u@local.example>', 'DATA', 'Subject: bs\r\n\r\nvia -bs\r\n.', 'QUIT'];
  let out = '';
  let replies = 0;
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    // A reply is complete at a line "NNN text" (not "NNN-"); answer it with the next command.
    const done = out.split('\r\n').filter((l) => /^\d{3} /.test(l)).length;
    while (replies < done) {
      replies++;
      const next = script.shift();
      if (next !== undefined) child.stdin.write(next + '\r\n');
      else child.stdin.end();
    }
  });
  assert.equal(await exited, 0);
  assert.match(out, /^220 /);
  assert.match(out, /\r\n354 /);
  assert.match(out, /\r\n250 [^\r]*queued[^\r]*\r\n221 /i);
  const [m] = queued(node);
  assert.ok(m, out);
  assert.deepEqual(m.recipients, ['u@local.example']);
  assert.match(m.body, /\r\nSubject: bs\r\n\r\nvia -bs\r\n$/);
});
