// The worker-thread entry for AffinityTransport: one SmtpTransport (so one pool per
// destination key pinned to this thread) built from workerData.smtp. Each request carries its
// body as a transferred ArrayBuffer, wrapped here without a copy. Every request gets exactly
// one reply {id, results}; a thrown error becomes a transient result for every recipient.
// {close: true} stops taking requests, lets the in-flight ones finish, closes the pools and
// exits. What the main thread's SmtpTransport would tell callbacks (a function cannot cross into
// a thread) comes back as messages: each TLS outcome when workerData.reportTls (TLS reporting),
// each fallback to clear when workerData.reportTlsFallback, and a credentials file that failed
// to re-read.
import { parentPort, workerData } from 'node:worker_threads';
import { SmtpTransport, type SmtpTransportOptions, type TlsFallbackEvent } from './smtp-transport.js';
import type { Destination, RecipientResult } from './types.js';
import type { MessageRecord, Recipient } from '../queue/types.js';
import type { TlsOutcome } from './tls-outcome.js';

export interface WorkerRequest {
  id: number;
  dest: Destination;
  message: MessageRecord;
  recipients: Recipient[];
  /** Exactly the body bytes (transferred). */
  body: ArrayBuffer;
}

export interface WorkerReply {
  id: number;
  results: RecipientResult[];
}

export interface WorkerClose {
  close: true;
}

/** What the worker tells besides replies: one TLS outcome, a fallback to clear, or a credentials file not re-read. */
export type WorkerNotice = { tlsOutcome: TlsOutcome } | { tlsFallback: TlsFallbackEvent } | { credentialsError: string };

/** workerData: the cloneable transport options, and whether TLS outcomes are wanted. */
export interface WorkerSetup {
  smtp: SmtpTransportOptions;
  reportTls: boolean;
  reportTlsFallback?: boolean;
}

if (parentPort) {
  const port = parentPort;
  const setup = workerData as WorkerSetup;
  const notify = (n: WorkerNotice): void => port.postMessage(n);
  const transport = new SmtpTransport({
    ...setup.smtp,
    ...(setup.reportTls ? { tlsOutcomes: { record: (o: TlsOutcome) => notify({ tlsOutcome: o }) } } : {}),
    ...(setup.reportTlsFallback === true ? { onTlsFallback: (e: TlsFallbackEvent) => notify({ tlsFallback: e }) } : {}),
    onCredentialsError: (err: Error) => notify({ credentialsError: err.message }),
  });
  const inFlight = new Set<Promise<void>>();
  let closing = false;

  const handle = async (m: WorkerRequest): Promise<void> => {
    const deferAll = (why: string): RecipientResult[] => {
      const reply = { text: `delivery thread error: ${why}`, enhanced: '4.3.0', transient: true, destination: m.dest?.key, at: Date.now() };
      return (m.recipients ?? []).map((r) => ({ kind: 'deferred', address: r.address, reply }));
    };
    let results: RecipientResult[];
    try {
      results = closing ? deferAll('transport closed') : await transport.deliver(m.dest, { message: m.message, recipients: m.recipients, body: Buffer.from(m.body) });
    } catch (err) {
      results = deferAll((err as Error)?.message ?? String(err));
    }
    const reply: WorkerReply = { id: m.id, results };
    port.postMessage(reply);
  };

  port.on('message', (m: WorkerRequest | WorkerClose) => {
    if ('close' in m) {
      if (closing) return;
      closing = true;
      void (async () => {
        await Promise.allSettled([...inFlight]);
        await transport.close().catch(() => {});
        process.exit(0);
      })();
      return;
    }
    const p = handle(m);
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  });
}
