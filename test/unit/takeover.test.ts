// Inherited listening sockets and the takeover's pieces: reading LISTEN_FDS as sd_listen_fds
// does (only for this pid, names checked, variables removed), matching them to the configured
// listeners, the queue's id fence (two processes enqueuing at once never make one id twice),
// and starting a successor (its LISTEN_PID is its own pid; a failure leaves no process behind).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from '../helpers/tmpdir.js';
import { checkListenFds, takeListenFds } from '../../src/takeover/listen-fds.js';
import { startSuccessor } from '../../src/takeover/successor.js';
import { Queue } from '../../src/queue/store.js';
import { startTestNode } from '../helpers/node.js';

const PID = 4242;
const env = (e: Record<string, string>): NodeJS.ProcessEnv => ({ PATH: '/bin', ...e });

test('LISTEN_FDS: the named sockets from fd 3, for this pid only; the variables are removed either way', () => {
  const e = env({ LISTEN_PID: String(PID), LISTEN_FDS: '3', LISTEN_FDNAMES: 'http:smtp:smtps' });
  assert.deepEqual([...takeListenFds(e, PID)!], [['http', 3], ['smtp', 4], ['smtps', 5]]);
  assert.deepEqual(e, { PATH: '/bin' }, 'children do not inherit them');
  const other = env({ LISTEN_PID: '1', LISTEN_FDS: '1', LISTEN_FDNAMES: 'smtp' });
  assert.equal(takeListenFds(other, PID), null, 'sockets for another process (a parent that did not unset them) are not ours');
  assert.deepEqual(other, { PATH: '/bin' });
  assert.equal(takeListenFds(env({}), PID), null);
  assert.deepEqual([...takeListenFds(env({ LISTEN_PID: String(PID), LISTEN_FDS: '0', LISTEN_FDNAMES: '' }), PID)!], []);
});

test('LISTEN_FDS: an unknown name, a name twice, names that do not match the count, a bad count are errors naming them', () => {
  const bad = (e: Record<string, string>, re: RegExp) =>
    assert.throws(() => takeListenFds(env({ LISTEN_PID: String(PID), ...e }), PID), (err: Error & { code?: string }) => err.code === 'PST_ERR_LISTEN_FDS' && re.test(err.message));
  bad({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'smtp:postern' }, /socket 4 is named "postern": postern knows only smtp, smtps, http/);
  bad({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'smtp:smtp' }, /two inherited sockets are named smtp/);
  bad({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'smtp' }, /names 1 sockets for LISTEN_FDS=2/);
  bad({ LISTEN_FDS: '1' }, /names no socket for LISTEN_FDS=1/);
  bad({ LISTEN_FDS: '-1', LISTEN_FDNAMES: 'smtp' }, /LISTEN_FDS="-1" is not a count/);
  bad({ LISTEN_FDS: '99', LISTEN_FDNAMES: 'smtp' }, /is not a count/);
});

test('every configured listener needs its socket, and every socket its listener', () => {
  const fds = new Map([['smtp', 3], ['http', 4]] as const);
  checkListenFds(fds, { smtp: true, smtps: false, http: true });
  assert.throws(() => checkListenFds(fds, { smtp: true, smtps: true, http: true }), /the smtps listener is on \(POSTERN_SMTPS_PORT\) but no inherited socket is named smtps/);
  assert.throws(() => checkListenFds(fds, { smtp: true, smtps: false, http: false }), /an inherited socket is named http but the http listener is off \(POSTERN_HTTP_PORT\)/);
});

test('startNode: a listener without its socket, or a socket that is not a listening TCP socket, stops the start naming it', async (t) => {
  await assert.rejects(startTestNode(t, { POSTERN_HTTP_PORT: '0' }, { listenFds: new Map([['smtp', 3]]) }), { code: 'PST_ERR_LISTEN_FDS', message: /the http listener is on \(POSTERN_HTTP_PORT\) but no inherited socket is named http/ });
  const dir = tmpdir(t);
  writeFileSync(join(dir, 'file'), 'not a socket');
  const fd = openSync(join(dir, 'file'), 'r');
  t.after(() => closeSync(fd));
  await assert.rejects(startTestNode(t, {}, { listenFds: new Map([['smtp', fd]]) }), { code: 'PST_ERR_LISTEN_FDS', message: new RegExp(`inherited socket ${fd} \\(for POSTERN_SMTP_PORT\\)`) });
});

test('the id fence: past its share the fenced process makes no id, the next opener counts from the fence', async (t) => {
  const dir = tmpdir(t);
  const q = Queue.open({ path: dir });
  const first = q.reserveId();
  q.fenceSeq(3);
  const mine = [q.reserveId(), q.reserveId(), q.reserveId()];
  assert.throws(() => q.reserveId(), { code: 'PST_ERR_QUEUE_SEQ_FENCED' });
  await q.enqueue({ sender: 'a@x.test', recipients: [{ address: 'b@y.test' }] }, Buffer.from('Subject: x\r\n\r\nx\r\n'), mine[0]);
  await q.close();
  const q2 = Queue.open({ path: dir });
  t.after(() => q2.close());
  const next = q2.reserveId();
  const seq = (id: string) => parseInt(id.slice(9), 32);
  assert.deepEqual(mine.map(seq), [seq(first) + 1, seq(first) + 2, seq(first) + 3]);
  assert.equal(seq(next), seq(first) + 4, 'the successor starts above every id the fenced process may make');
});

test('unfenceSeq: a takeover that failed gives the node its whole sequence back', async (t) => {
  const q = Queue.open({ path: tmpdir(t) });
  t.after(() => q.close());
  q.fenceSeq(1);
  q.reserveId();
  assert.throws(() => q.reserveId(), { code: 'PST_ERR_QUEUE_SEQ_FENCED' });
  q.unfenceSeq();
  q.reserveId();
  q.reserveId();
});

test('startSuccessor: the new process gets the sockets as LISTEN_FDS with its own pid and says ready', async (t) => {
  const dir = tmpdir(t);
  const out = join(dir, 'seen.json');
  const script = `
    const fs = require('node:fs');
    const fd = Number(process.env.LISTEN_TAKEOVER_FD);
    fs.writeFileSync(${JSON.stringify(out)}, JSON.stringify({ pid: process.pid, LISTEN_PID: process.env.LISTEN_PID, LISTEN_FDS: process.env.LISTEN_FDS, LISTEN_FDNAMES: process.env.LISTEN_FDNAMES, fd, fdIsOpen: fs.fstatSync(3).isFile() }));
    fs.writeSync(fd, 'ready\\n');
    setTimeout(() => {}, 200);`;
  const file = join(dir, 'held');
  writeFileSync(file, 'x');
  const held = openSync(file, 'r');
  t.after(() => closeSync(held));
  const s = await startSuccessor({ fds: new Map([['smtp', held]]), readyTimeoutMs: 10_000, command: { file: process.execPath, args: ['-e', script] } });
  const seen = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
  assert.deepEqual(seen, { pid: s.pid, LISTEN_PID: String(s.pid), LISTEN_FDS: '1', LISTEN_FDNAMES: 'smtp', fd: 4, fdIsOpen: true });
  await new Promise((r) => s.child.once('exit', r));
});

test('startSuccessor: a process that exits or never says ready is stopped, and the error says why', async () => {
  await assert.rejects(startSuccessor({ fds: new Map(), readyTimeoutMs: 10_000, command: { file: process.execPath, args: ['-e', 'process.exit(3)'] } }), { code: 'PST_ERR_TAKEOVER', message: /exited before it was ready \(exit status 3\)/ });
  const started = Date.now();
  await assert.rejects(startSuccessor({ fds: new Map(), readyTimeoutMs: 300, command: { file: process.execPath, args: ['-e', 'setTimeout(() => {}, 60000)'] } }), { code: 'PST_ERR_TAKEOVER', message: /not ready within 300 ms/ });
  assert.ok(Date.now() - started < 10_000, 'the silent one was stopped (SIGTERM), not waited for');
});
