// The smtp-server peer of the accept benchmark, run as a child node process by bench/lib/targets.ts:
//   node build/bench/lib/smtp-server-peer.js --port N --dir DIR
// nodemailer's smtp-server (from bench/.peers, scripts/install-peers.sh) on 127.0.0.1:N that
// writes each message to its own file in DIR and fsyncs it before answering 250: a minimal
// "accept to disk" server, no queue index, no delivery. Prints {"messages":N} on SIGTERM.
import { createRequire } from 'node:module';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { peerPackage } from './haraka.js';

interface Session { id: string; envelope: { mailFrom: { address: string } | false; rcptTo: { address: string }[] } }
type DataStream = Readable & { sizeExceeded?: boolean };
interface SMTPServerOptions {
  banner?: string;
  logger?: boolean;
  disabledCommands?: string[];
  authOptional?: boolean;
  size?: number;
  maxClients?: number;
  socketTimeout?: number;
  onData(stream: DataStream, session: Session, cb: (err?: Error | null, message?: string) => void): void;
}
interface SMTPServerLike {
  listen(port: number, host: string, cb: () => void): void;
  on(ev: 'error', cb: (err: Error) => void): void;
}

function arg(name: string): string {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? process.argv[i + 1] : undefined;
  if (v === undefined) throw new Error(`smtp-server-peer: ${name} is required`);
  return v;
}

const port = Number(arg('--port'));
const dir = arg('--dir');
const pkg = peerPackage('smtp-server');
if (!pkg) throw new Error('smtp-server is not installed in bench/.peers: run scripts/install-peers.sh');
const require = createRequire(join(pkg, 'package.json'));
const { SMTPServer } = require(pkg) as { SMTPServer: new (o: SMTPServerOptions) => SMTPServerLike };

let messages = 0;
let seq = 0;

async function store(chunks: Buffer[], session: Session): Promise<void> {
  const name = join(dir, `${process.pid}.${++seq}.${session.id}.eml`);
  const env = Buffer.from(`X-Envelope-From: ${session.envelope.mailFrom ? session.envelope.mailFrom.address : ''}\r\nX-Envelope-To: ${session.envelope.rcptTo.map((r) => r.address).join(', ')}\r\n`, 'latin1');
  const fh = await open(name, 'wx');
  try {
    await fh.writev([env, ...chunks]);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const server = new SMTPServer({
  banner: 'postern bench smtp-server peer',
  logger: false,
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  size: 64 * 1024 * 1024,
  maxClients: 100_000,
  socketTimeout: 300_000,
  onData(stream, session, cb) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', (err: Error) => cb(err));
    stream.on('end', () => {
      if (stream.sizeExceeded) return cb(Object.assign(new Error('552 message too big'), { responseCode: 552 }));
      store(chunks, session).then(
        () => {
          messages++;
          cb(null, 'stored');
        },
        (err: Error) => cb(Object.assign(new Error(`451 ${err.message}`), { responseCode: 451 })),
      );
    });
  },
});
server.on('error', (err) => process.stderr.write(`smtp-server-peer: ${err.message}\n`));
server.listen(port, '127.0.0.1', () => process.stderr.write(`smtp-server-peer: listening on 127.0.0.1:${port}, storing in ${dir}\n`));

const bye = (): void => {
  process.stdout.write(JSON.stringify({ messages }) + '\n', () => process.exit(0));
};
process.on('SIGTERM', bye);
process.on('SIGINT', bye);
