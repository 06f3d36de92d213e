// Pipe routes (POSTERN_ROUTES "pipe:") with the real local delivery agents of the field:
// Dovecot's dovecot-lda (asking the user database of a running Dovecot) and Courier's maildrop
// (unpacked by scripts/unpack-mta.sh), each writing into Maildirs; their exit statuses come
// back as delivered, deferred (EX_TEMPFAIL) and bounced (EX_NOUSER with the program's words).
// As root (CI) the programs run as nobody, as the route says. Each test skips, saying why, when
// its program is not there.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from '../helpers/tmpdir.js';
import { deliveryRequest } from '../helpers/scripted-server.js';
import { dovecotBinary, startDovecotLmtp } from '../helpers/dovecot.js';
import { skipReason, unpackedProgram } from '../helpers/unpacked.js';
import { PipeTransport } from '../../src/delivery/pipe-transport.js';
import { parseRoutes, type PipeTarget } from '../../src/config/routes.js';
import { checkPipeRoutes } from '../../src/config/pipe-routes.js';
import type { Destination } from '../../src/delivery/types.js';

const DOVECOT_LDA = '/usr/lib/dovecot/dovecot-lda';
const asRoot = (process.getuid?.() ?? 0) === 0;
/** As root a pipe route must name a user (config/pipe-routes.ts). */
const RUN_AS = asRoot ? 'user=nobody ' : '';

/** Parse and check the route as start-up does; the transport gets the identities it resolved. */
function pipeRoute(t: TestContext, spec: string): { dest: Extract<Destination, { kind: 'pipe' }>; tr: PipeTransport; uid: number; gid: number } {
  const parsed = parseRoutes(`example.com=pipe:${spec}`);
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.error);
  const checked = checkPipeRoutes(parsed.value);
  assert.deepEqual(checked.problems, []);
  const target = parsed.value.routes[0]!.target as PipeTarget;
  const id = checked.identities.get('example.com');
  const tr = new PipeTransport({ identities: checked.identities });
  t.after(() => tr.close());
  return { dest: { kind: 'pipe', key: `pipe:${target.program}@example.com`, route: 'example.com', target }, tr, uid: id?.uid ?? process.getuid!(), gid: id?.gid ?? process.getgid!() };
}

function newFiles(dir: string): string[] {
  const d = join(dir, 'new');
  return existsSync(d) ? readdirSync(d).map((f) => readFileSync(join(d, f), 'latin1')) : [];
}

const BODY = 'From: s@sender.test\r\nTo: alice@example.com\r\nSubject: via pipe\r\nMessage-ID: <pipe-mda@sender.test>\r\n\r\n.dot line\r\nhello\r\n';

test('dovecot: dovecot-lda through a pipe route delivers each recipient into its Maildir; no userdb answer is EX_TEMPFAIL, deferred', { skip: dovecotBinary() && existsSync(DOVECOT_LDA) ? false : `${DOVECOT_LDA} or dovecot not installed (apt-get install dovecot-core dovecot-lmtpd)` }, async (t) => {
  // The running Dovecot answers dovecot-lda's userdb lookups (its auth-userdb socket).
  const dc = await startDovecotLmtp(t);
  // Errors on stderr (the captured output) rather than in a log file only root may open.
  const quiet = '-o log_path=/dev/stderr -o info_log_path=/dev/null -o stats_writer_socket_path=';
  const { dest, tr } = pipeRoute(t, `${RUN_AS}${DOVECOT_LDA} -c ${dc.confPath} ${quiet} -f {sender} -d {recipient}`);
  const res = await tr.deliver(dest, deliveryRequest('s@sender.test', ['alice@example.com', 'bob@example.com'], BODY));
  assert.deepEqual(res.map((r) => [r.address, r.kind, r.reply.code]), [
    ['alice@example.com', 'delivered', 250],
    ['bob@example.com', 'delivered', 250],
  ], `${JSON.stringify(res)}\n${dc.log()}`);
  for (const user of ['alice@example.com', 'bob@example.com']) {
    const files = newFiles(join(dc.mailRoot, user));
    assert.equal(files.length, 1, user);
    const text = files[0]!;
    // One Return-Path (the pipe's), the envelope recipient, the body unstuffed and in LF.
    assert.match(text, /^Return-Path: <s@sender\.test>\nDelivered-To: /);
    assert.equal(text.match(/^Return-Path:/gm)?.length, 1);
    assert.match(text, new RegExp(`^Delivered-To: ${user.replace('.', '\\.')}$`, 'm'));
    assert.ok(text.endsWith('Subject: via pipe\nMessage-ID: <pipe-mda@sender.test>\n\n.dot line\nhello\n'), text);
  }
  // The same program pointed at a configuration whose Dovecot is not running: EX_TEMPFAIL.
  const down = join(tmpdir(t), 'down.conf');
  writeFileSync(down, readFileSync(dc.confPath, 'utf8').replace(/^base_dir = .*$/m, `base_dir = ${join(down, '..', 'run')}`));
  chmodSync(join(down, '..'), 0o755);
  const r2 = pipeRoute(t, `${RUN_AS}${DOVECOT_LDA} -c ${down} ${quiet} -f {sender} -d {recipient}`);
  const res2 = await r2.tr.deliver(r2.dest, deliveryRequest('s@sender.test', ['carol@example.com'], BODY));
  assert.deepEqual(res2.map((r) => [r.kind, r.reply.code, r.reply.enhanced]), [['deferred', 451, '4.3.0']], JSON.stringify(res2));
  assert.match(res2[0]!.reply.text, /\(dovecot-lda exited 75\)$/);
});

test('maildrop: a pipe route runs maildrop with a filter file per recipient: delivered into the Maildir, EX_NOUSER bounced with its words, a missing Maildir deferred', { skip: skipReason('maildrop', 'maildrop') }, async (t) => {
  const maildrop = unpackedProgram('maildrop', 'maildrop')!;
  const dir = tmpdir(t);
  chmodSync(dir, 0o755);
  const mail = join(dir, 'mail');
  for (const user of ['alice', 'bob']) for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(mail, user, sub), { recursive: true });
  const filter = join(dir, 'mailfilter');
  // $1 is the first argument after the filter file: the recipient's local part.
  writeFileSync(filter, `if ($1 eq "ghost")\n{\n  echo "ghost: no such user here"\n  EXITCODE=67\n  exit\n}\nto "${mail}/$1/"\n`, { mode: 0o600 });
  const { dest, tr, uid, gid } = pipeRoute(t, `${RUN_AS}${maildrop} -f {sender} ${filter} {local}`);
  // maildrop reads only a filter file of its own user, and writes as that user.
  if (asRoot) {
    chownSync(filter, uid, gid);
    for (const user of ['alice', 'bob']) for (const sub of ['', 'tmp', 'new', 'cur']) chownSync(join(mail, user, sub), uid, gid);
  }
  const res = await tr.deliver(dest, deliveryRequest('s@sender.test', ['alice@example.com', 'bob@example.com', 'ghost@example.com', 'nobox@example.com'], BODY));
  assert.deepEqual(res.map((r) => [r.address, r.kind, r.reply.code, r.reply.enhanced]), [
    ['alice@example.com', 'delivered', 250, '2.0.0'],
    ['bob@example.com', 'delivered', 250, '2.0.0'],
    ['ghost@example.com', 'failed', 550, '5.1.1'],
    ['nobox@example.com', 'deferred', 451, '4.3.0'],
  ], JSON.stringify(res));
  assert.equal(res[2]!.reply.text, 'ghost: no such user here (maildrop exited 67)');
  assert.match(res[3]!.reply.text, /\(maildrop exited 75\)$/);
  for (const user of ['alice', 'bob']) {
    const files = newFiles(join(mail, user));
    assert.equal(files.length, 1, user);
    assert.equal(files[0], `Return-Path: <s@sender.test>\nDelivered-To: ${user}@example.com\nFrom: s@sender.test\nTo: alice@example.com\nSubject: via pipe\nMessage-ID: <pipe-mda@sender.test>\n\n.dot line\nhello\n`);
  }
});
