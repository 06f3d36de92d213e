// A node:http server on 127.0.0.1:0 standing in for a webhook or event receiver: it records
// every request (method, URL, headers, whole body) and the connections opened, and answers
// through the test's handler once the body is in (default 200 "ok"). Closed, connections
// included, in t.after.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** Answer a request whose body has been read in full (and already recorded). */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

export interface HttpReceiver {
  port: number;
  /** http://127.0.0.1:<port> */
  origin: string;
  requests: ReceivedRequest[];
  /** TCP connections accepted so far (to see keep-alive reuse). */
  connections(): number;
  close(): Promise<void>;
}

export async function startHttpReceiver(t: TestContext, handle: HttpHandler = (_req, res) => void res.writeHead(200).end('ok')): Promise<HttpReceiver> {
  const requests: ReceivedRequest[] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
      handle(req, res, body);
    });
  });
  server.on('connection', () => void connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
    return closed;
  };
  t.after(close);
  const port = (server.address() as AddressInfo).port;
  return { port, origin: `http://127.0.0.1:${port}`, requests, connections: () => connections, close };
}
