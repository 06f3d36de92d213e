// A TCP relay on 127.0.0.1:0 in front of a real server, recording what the client wrote per
// socket read: when one read holds MAIL and RCPT, the client sent them without waiting for
// the reply (PIPELINING, RFC 2920); when every command came in a read of its own, it waited.
// Plain SMTP only (after STARTTLS the reads are ciphertext).
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import type { TestContext } from 'node:test';

export interface RecordingProxy {
  port: number;
  /** Client-to-server reads of every connection so far, as latin1 text, in order. */
  reads(): string[];
}

export async function startRecordingProxy(t: TestContext, targetPort: number): Promise<RecordingProxy> {
  const reads: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect({ port: targetPort, host: '127.0.0.1' });
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => {
      reads.push(d.toString('latin1'));
      upstream.write(d);
    });
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('proxy has no port');
  return { port: addr.port, reads: () => reads.slice() };
}
