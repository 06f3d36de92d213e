// A bare Node `net` server that greets and listens, the reference the reliability suite measures
// an idle SMTP session's memory against: what Node itself costs per accepted socket. Run as
//   node build/test/helpers/bare-greeter.js PORT
// It listens on 127.0.0.1:PORT with postern's server options, writes one greeting per
// connection and ignores what it reads; it exits on SIGTERM or SIGKILL.
import { createServer } from 'node:net';

const port = Number(process.argv[2]);
if (!(port > 0)) throw new Error('usage: bare-greeter.js PORT');

const greeting = Buffer.from('220 bare.rel.test ESMTP\r\n');
// Shared listeners, as postern's: a closure per socket would be counted against Node.
const ignore = (): void => {};
createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
  socket.on('error', ignore);
  socket.on('data', ignore);
  socket.write(greeting);
}).listen({ host: '127.0.0.1', port, backlog: 1024 });
