// A child process that holds many idle SMTP connections to a loopback port, for the
// reliability suite's idle-connection test (its own process, so the test's file-descriptor
// limit and event loop are not the ones measured). Run as
//   node build/test/helpers/hold-connections.js PORT
// and driven by lines on stdin, each answered by one JSON line on stdout:
//   open N   open N more connections (200 connecting at once) and wait for each greeting
//   status   {open, greeted, closed, evicted (closed after a 421 4.7.0), oldestClosed}
// It exits when stdin ends, destroying every socket.
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';

const port = Number(process.argv[2]);
if (!(port > 0)) throw new Error('usage: hold-connections.js PORT');

interface Held {
  index: number;
  socket: Socket;
  greeted: boolean;
  /** The first bytes received after the greeting (a 421 when evicted). */
  later: string;
  closed: boolean;
}

const held: Held[] = [];
let failed = 0;

function openOne(): Promise<void> {
  return new Promise((resolve) => {
    const h: Held = { index: held.length, socket: connect({ host: '127.0.0.1', port }), greeted: false, later: '', closed: false };
    held.push(h);
    h.socket.setEncoding('latin1');
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve();
      }
    };
    h.socket.on('data', (d: string) => {
      if (!h.greeted && d.startsWith('220')) {
        h.greeted = true;
        finish();
      } else if (h.later.length < 200) h.later += d;
    });
    h.socket.on('error', () => {
      failed++;
      finish();
    });
    h.socket.on('close', () => {
      h.closed = true;
      finish();
    });
  });
}

async function open(n: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      await openOne();
    }
  };
  await Promise.all(Array.from({ length: Math.min(200, n) }, worker));
}

function status(): Record<string, unknown> {
  const closed = held.filter((h) => h.closed);
  return {
    open: held.length - closed.length,
    greeted: held.filter((h) => h.greeted).length,
    closed: closed.length,
    failed,
    evicted: closed.filter((h) => h.later.startsWith('421 4.7.0')).length,
    closedIndexes: closed.slice(0, 10).map((h) => h.index),
    closedReplies: closed.slice(0, 3).map((h) => h.later.trim()),
  };
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === 'open') void open(Number(arg)).then(() => console.log(JSON.stringify(status())));
  else console.log(JSON.stringify(status()));
});
rl.on('close', () => {
  for (const h of held) h.socket.destroy();
  process.exit(0);
});
