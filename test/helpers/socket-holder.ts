// A stand-in for systemd's socket activation, for tests: started with listening sockets as fds
// 3, 4, ... (their names in argv), it never accepts on them itself (it makes no server of
// them) and, for each JSON line on stdin {file, args, env}, starts that command with the
// sockets as LISTEN_FDS (LISTEN_PID set to the new process's pid, as systemd does). It
// answers {started: pid} and {exited: pid, code, signal} lines on stdout; the commands' own
// stdout and stderr go to its stderr.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const names = process.argv.slice(2);
const send = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

createInterface({ input: process.stdin }).on('line', (line) => {
  const { file, args, env } = JSON.parse(line) as { file: string; args: string[]; env: Record<string, string> };
  const child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'holder', file, ...args], {
    env: { ...env, LISTEN_FDS: String(names.length), LISTEN_FDNAMES: names.join(':') },
    stdio: ['ignore', 2, 2, ...names.map((_, i) => 3 + i)],
  });
  send({ started: child.pid });
  child.on('exit', (code, signal) => send({ exited: child.pid, code, signal }));
});
// The test ends: stdin closes, and the holder goes (its children are the test's to stop).
process.stdin.on('end', () => process.exit(0));
