// A private, throw-away Postfix instance as the relay bench's peer: bench/lib/postfix.ts's
// instance (its own config_directory, queue_directory and data_directory under one temp folder,
// smtpd on one 127.0.0.1 port, same start, stop and cleanup) but from the templates in
// bench/peers/postfix-relay/, which relay every message to relayhost = [127.0.0.1]:SINK over
// cached connections (README there). The system's own instance (/etc/postfix) is never read,
// started or touched.
import { havePostfix, peerTemplateDir, startPostfix, type PostfixInstance } from './postfix.js';

export { havePostfix };

/** bench/peers/postfix-relay, found whether this runs from build/bench/lib or bench/lib. */
export function relayTemplateDir(): string {
  return peerTemplateDir('postfix-relay');
}

export interface PostfixRelayOptions {
  port: number;
  /** The sink's port on 127.0.0.1 (relayhost). */
  sinkPort: number;
  /** Parallel deliveries to the sink (destination concurrency). */
  outConnections: number;
  /** main.cf settings that replace the template's (or are appended). */
  overrides?: Record<string, string>;
  parent?: string;
}

export type PostfixRelayInstance = PostfixInstance;

export function startPostfixRelay(opts: PostfixRelayOptions): Promise<PostfixRelayInstance> {
  return startPostfix({
    port: opts.port,
    overrides: opts.overrides,
    parent: opts.parent,
    template: 'postfix-relay',
    prefix: 'postern-bench-postfix-relay-',
    vars: { SINK_PORT: opts.sinkPort, OUT_CONNS: opts.outConnections },
  });
}
