// Every setting of postern, declared once: its environment variable, type, default and a
// one-line doc. loadConfig() (load.ts) is the only reader of process.env and parses each value
// into the typed form below (rates, schedules, routes, keys: never re-parsed later); the
// table of docs/configuration.md is generated from this list (`postern config --markdown`).
import { hostname, availableParallelism } from 'node:os';
import type { HostPort, RouteTable, TlsPolicy } from './routes.js';
import type { DkimKeySpec } from './dkim-keys.js';

export type SettingType =
  | { kind: 'string' }
  | { kind: 'host' }
  | { kind: 'path'; optional?: boolean }
  | { kind: 'port'; allowZero?: boolean; optional?: boolean }
  | { kind: 'int'; min: number; max: number }
  /** optional: empty → null (the loader fills the default it depends on). */
  | { kind: 'bytes'; min: number; max: number; optional?: boolean }
  | { kind: 'duration'; min: number; max: number }
  /** Comma-separated durations > 0 (a retry schedule). */
  | { kind: 'durations' }
  /** "100/s" → events per ms; empty → null (unlimited). */
  | { kind: 'rate' }
  /** A score 0-1; empty → null. */
  | { kind: 'score' }
  /** An http:// or https:// URL; empty → '' (off). */
  | { kind: 'url' }
  /** A redis:// or rediss:// URL (optional user:password@, /db); empty → '' (off). Shown redacted. */
  | { kind: 'redis-url' }
  /** Comma-separated items (paths); empty → []. */
  | { kind: 'list' }
  | { kind: 'routes' }
  /** Comma-separated host[:port] in preference order; empty → null. */
  /** host:port list; a host without a port gets defaultPort (25). */
  | { kind: 'hosts'; defaultPort?: number }
  | { kind: 'dkim-keys' }
  | { kind: 'bool' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'domains' }
  | { kind: 'cidrs' };

export interface Setting {
  readonly key: keyof Config;
  readonly env: string;
  readonly type: SettingType;
  readonly default: string;
  /** How docs/configuration.md shows a default that depends on the machine. */
  readonly shownDefault?: string;
  readonly doc: string;
}

/** The filled, frozen configuration every module receives. Units are in the names. */
export interface Config {
  smtpHost: string;
  smtpPort: number;
  /** null: no implicit-TLS listener. */
  smtpsPort: number | null;
  tlsCert: string;
  tlsKey: string;
  hostname: string;
  dataDir: string;
  maxMessageBytes: number;
  maxRecipients: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  trustedNetworks: string[];
  /** Load balancers whose SMTP connections begin with a PROXY protocol header; [] = none. */
  proxyTrusted: string[];
  proxyTimeoutMs: number;
  localDomains: string[];
  authUsers: string;
  requireTlsForAuth: boolean;
  logLevel: string;
  maxCommandLineBytes: number;
  idleTimeoutMs: number;
  dataTimeoutMs: number;
  tlsHandshakeTimeoutMs: number;
  maxErrors: number;
  shutdownTimeoutMs: number;
  queueMapBytes: number;
  queueLeaseMs: number;
  maxPendingWrites: number;
  maxBodyMemory: number;
  /** Filled by the loader: a quarter of maxBodyMemory when not set. */
  maxBodyMemoryPerClient: number;
  mtPriorityUntrusted: boolean;
  statsIntervalMs: number;
  delivery: 'off' | 'routes' | 'mx';
  routes: RouteTable;
  /** null: no smarthost. */
  smarthost: readonly HostPort[] | null;
  /** '' = the smarthost is not logged in to. */
  smarthostAuthFile: string;
  tlsPolicy: TlsPolicy;
  /** MTA-STS (RFC 8461) for deliveries by MX (POSTERN_DELIVERY=mx). */
  mtaSts: boolean;
  /** The validating resolver DANE asks (its AD bit is trusted); null: no DANE. */
  dnssecResolver: HostPort[] | null;
  destMaxConnections: number;
  destMaxMessagesPerConnection: number;
  destIdleTimeoutMs: number;
  destTransactionTimeoutMs: number;
  /** Messages per ms per destination; null: unlimited. */
  destRate: number | null;
  destProbeIntervalMs: number;
  deliveryConcurrency: number;
  maxDeliveryMemory: number;
  /** Delays in ms before attempt 2, 3, …; the last repeats. */
  retrySchedule: readonly number[];
  /** The shaping file ('' = none: every destination is its own site with the settings above). */
  shaping: string;
  maxQueueLifetimeMs: number;
  deliveryThreads: number;
  httpHost: string;
  httpPort: number | null;
  apiToken: string;
  httpMaxBodyBytes: number;
  httpMaxConnections: number;
  httpMaxConnectionsPerIp: number;
  workers: number;
  filterModules: readonly string[];
  filterTimeoutMs: number;
  filterQueue: number;
  filterBatch: number;
  spamModel: string;
  /** null: the model's own threshold. */
  spamTagScore: number | null;
  spamRejectScore: number | null;
  spamQuarantineScore: number | null;
  authResults: boolean;
  dmarcEnforce: boolean;
  authResultsTimeoutMs: number;
  dkimKeys: readonly DkimKeySpec[];
  eventsUrl: string;
  /** Requests per ms per client address; null: unlimited. */
  httpRate: number | null;
  deliveryAllowPrivate: boolean;
  maxHops: number;
  minDataRate: number;
  /** Host names accepted in the HTTP Host header besides IP literals and localhost (lower case). */
  httpAllowedHosts: string[];
  metricsAuth: boolean;
  eventsMax: number;
  eventsMaxAgeMs: number;
  eventsRejectedIntervalMs: number;
  alertWindowMs: number;
  alertDeferralPercent: number;
  alertBouncePercent: number;
  alertMinRecipients: number;
  alertTlsFailures: number;
  alertQueueGrowth: number;
  alertQueueAgeMs: number;
  alertFilterUtilizationPercent: number;
  alertFilterWaitMs: number;
  eventsToken: string;
  commandTimeoutMs: number;
  stressPercent: number;
  stressTimeoutMs: number;
  greetDelayMs: number;
  ipv6Prefix: number;
  recipients: string;
  rcptVerify: 'off' | 'lmtp';
  rcptVerifyTimeoutMs: number;
  maildirCreate: boolean;
  maildirLineEnds: 'crlf' | 'lf';
  maxRecipientsUntrusted: number;
  authMaxFailures: number;
  authUserMaxFailures: number;
  authLockoutMs: number;
  authMaxDelayMs: number;
  authConcurrency: number;
  authQueue: number;
  senderLogins: string;
  dkimSignTrusted: boolean;
  bounceRules: string;
  /** '' = off; lower case. */
  verpDomain: string;
  verpSecret: string;
  bounceAddresses: readonly string[];
  suppressOn: readonly string[];
  maxReportBytes: number;
  /** '' = no shared state: every limit is this node's own. */
  redisUrl: string;
  redisPrefix: string;
  redisTimeoutMs: number;
  redisLeaseMs: number;
  tlsrpt: boolean;
  /** '' = the hostname. */
  tlsrptOrg: string;
  /** '' = postmaster@hostname. */
  tlsrptContact: string;
}

const MiB = 1024 * 1024;

export const SETTINGS: readonly Setting[] = [
  { key: 'smtpHost', env: 'POSTERN_SMTP_HOST', type: { kind: 'host' }, default: '127.0.0.1', doc: 'Address the SMTP listeners bind (0.0.0.0 or :: for all).' },
  { key: 'smtpPort', env: 'POSTERN_SMTP_PORT', type: { kind: 'port', allowZero: true }, default: '2525', doc: 'SMTP port (plain, with STARTTLS when a certificate is set); 0 picks a free port.' },
  { key: 'smtpsPort', env: 'POSTERN_SMTPS_PORT', type: { kind: 'port', allowZero: true, optional: true }, default: '', doc: 'Implicit-TLS submission port (RFC 8314); off unless set (0 picks a free port). Needs the certificate.' },
  { key: 'tlsCert', env: 'POSTERN_TLS_CERT', type: { kind: 'path', optional: true }, default: '', doc: 'PEM certificate chain for STARTTLS and the implicit-TLS port.' },
  { key: 'tlsKey', env: 'POSTERN_TLS_KEY', type: { kind: 'path', optional: true }, default: '', doc: 'PEM private key for POSTERN_TLS_CERT.' },
  { key: 'hostname', env: 'POSTERN_HOSTNAME', type: { kind: 'host' }, default: hostname(), shownDefault: '*OS hostname*', doc: 'Name in the greeting, EHLO reply and Received headers (default: the OS hostname).' },
  { key: 'dataDir', env: 'POSTERN_DATA_DIR', type: { kind: 'path' }, default: './data', doc: 'Folder of the LMDB queue.' },
  { key: 'maxMessageBytes', env: 'POSTERN_MAX_MESSAGE_BYTES', type: { kind: 'bytes', min: 1024, max: 2 ** 31 - 1 }, default: String(25 * MiB), doc: 'Largest message accepted (advertised as SIZE); larger gets 552 5.3.4. Suffixes K, M, G (binary) allowed.' },
  { key: 'maxRecipients', env: 'POSTERN_MAX_RECIPIENTS', type: { kind: 'int', min: 1, max: 100000 }, default: '1000', doc: 'Recipients per message; more get 452 4.5.3.' },
  { key: 'maxConnections', env: 'POSTERN_MAX_CONNECTIONS', type: { kind: 'int', min: 1, max: 1000000 }, default: '2000', doc: 'Concurrent SMTP connections in total; at the limit the session silent longest gets 421 4.7.0 to make room for a new client (sessions waiting on us are never chosen, nor trusted or authenticated ones for an untrusted newcomer).' },
  { key: 'maxConnectionsPerIp', env: 'POSTERN_MAX_CONNECTIONS_PER_IP', type: { kind: 'int', min: 1, max: 1000000 }, default: '50', doc: 'Concurrent connections from one client outside POSTERN_TRUSTED_NETWORKS (an IPv4 address, an IPv6 prefix of POSTERN_IPV6_PREFIX bits); more get 421 4.7.0.' },
  { key: 'trustedNetworks', env: 'POSTERN_TRUSTED_NETWORKS', type: { kind: 'cidrs' }, default: '127.0.0.0/8,::1/128', doc: 'Comma-separated CIDRs allowed to relay to any domain (and exempt from the per-IP limit).' },
  { key: 'proxyTrusted', env: 'POSTERN_PROXY_TRUSTED', type: { kind: 'cidrs' }, default: '', doc: 'Comma-separated CIDRs of load balancers (HAProxy `send-proxy` or `send-proxy-v2`): a connection from them to the SMTP port must begin with a PROXY protocol header, v1 or v2, and the client address it carries is used instead of the balancer\'s everywhere (trusted networks, relay, per-address limits, AUTH back-off, SPF, Received:, logs). Without a valid header the connection is closed unanswered. Other clients\' headers are not read. Empty = off. See docs/scale-out.md.' },
  { key: 'proxyTimeoutMs', env: 'POSTERN_PROXY_TIMEOUT_MS', type: { kind: 'duration', min: 100, max: 60000 }, default: '5s', doc: 'Time a connection from POSTERN_PROXY_TRUSTED has to send its whole PROXY header before it is closed unanswered (the spec asks for at least 3 s, a TCP retransmit).' },
  { key: 'localDomains', env: 'POSTERN_LOCAL_DOMAINS', type: { kind: 'domains' }, default: '', doc: 'Comma-separated domains postern accepts mail for from anyone (no relay check).' },
  { key: 'authUsers', env: 'POSTERN_AUTH_USERS', type: { kind: 'path', optional: true }, default: '', doc: 'Users file (scrypt hashes, written by `postern user add`); enables AUTH PLAIN LOGIN.' },
  { key: 'requireTlsForAuth', env: 'POSTERN_REQUIRE_TLS_FOR_AUTH', type: { kind: 'bool' }, default: 'true', doc: 'Offer and allow AUTH only over TLS.' },
  { key: 'logLevel', env: 'POSTERN_LOG_LEVEL', type: { kind: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }, default: 'info', doc: 'pino log level (JSON lines on stdout).' },
  { key: 'maxCommandLineBytes', env: 'POSTERN_MAX_COMMAND_LINE_BYTES', type: { kind: 'int', min: 512, max: 65536 }, default: '2048', doc: 'Longest command line with its CRLF (RFC 5321 §4.5.3.1.4 minimum 512, more for extension parameters); longer gets 500 5.5.6.' },
  { key: 'idleTimeoutMs', env: 'POSTERN_IDLE_TIMEOUT_MS', type: { kind: 'duration', min: 1000, max: 3600000 }, default: '300000', doc: 'Time to wait for the next command (RFC 5321 §4.5.3.2.7: 5 minutes). Suffixes ms, s, m allowed.' },
  { key: 'dataTimeoutMs', env: 'POSTERN_DATA_TIMEOUT_MS', type: { kind: 'duration', min: 1000, max: 3600000 }, default: '180000', doc: 'Time to wait for the next block of message data (RFC 5321 §4.5.3.2.5: 3 minutes).' },
  { key: 'tlsHandshakeTimeoutMs', env: 'POSTERN_TLS_HANDSHAKE_TIMEOUT_MS', type: { kind: 'duration', min: 100, max: 600000 }, default: '30000', doc: 'Time allowed for a TLS handshake.' },
  { key: 'maxErrors', env: 'POSTERN_MAX_ERRORS', type: { kind: 'int', min: 1, max: 1000 }, default: '20', doc: 'Errors one session may cause before 421 4.7.0 and disconnect.' },
  { key: 'shutdownTimeoutMs', env: 'POSTERN_SHUTDOWN_TIMEOUT_MS', type: { kind: 'duration', min: 0, max: 600000 }, default: '30000', doc: 'On SIGTERM, time given to open transactions before they get 421 4.3.2.' },
  { key: 'queueMapBytes', env: 'POSTERN_QUEUE_MAP_BYTES', type: { kind: 'bytes', min: MiB, max: 2 ** 46 }, default: String(4 * 1024 * MiB), doc: 'Initial LMDB map size; it grows as needed.' },
  { key: 'queueLeaseMs', env: 'POSTERN_QUEUE_LEASE_MS', type: { kind: 'duration', min: 1000, max: 86400000 }, default: '300000', doc: 'How long a delivery lease lasts before the message returns to the queue.' },
  { key: 'maxPendingWrites', env: 'POSTERN_MAX_PENDING_WRITES', type: { kind: 'int', min: 1, max: 1000000 }, default: '5000', doc: 'Messages waiting for their commit at once; past it new messages get 452 4.3.1 (back-pressure, never loss).' },
  { key: 'maxBodyMemory', env: 'POSTERN_MAX_BODY_MEMORY', type: { kind: 'bytes', min: MiB, max: 2 ** 46 }, default: String(256 * MiB), doc: 'Bytes of message data all SMTP sessions may hold in memory at once (a body counts from its first byte until its 250 or refusal). Past it a session stops reading (TCP holds the client back, its data deadline stopped) until bodies ahead of it are answered, and after POSTERN_DATA_TIMEOUT_MS of waiting gets 421 4.3.2; the body begun first always goes on, so a message of POSTERN_MAX_MESSAGE_BYTES always fits. Bounds memory by configuration instead of sessions × message size. Suffixes K, M, G.' },
  { key: 'maxBodyMemoryPerClient', env: 'POSTERN_MAX_BODY_MEMORY_PER_CLIENT', type: { kind: 'bytes', min: 64 * 1024, max: 2 ** 46, optional: true }, default: '', shownDefault: '*a quarter of POSTERN_MAX_BODY_MEMORY*', doc: 'Each client\'s share of POSTERN_MAX_BODY_MEMORY (a client as POSTERN_MAX_CONNECTIONS_PER_IP counts them: an IPv4 address, an IPv6 prefix of POSTERN_IPV6_PREFIX bits; POSTERN_TRUSTED_NETWORKS have none). A client holding more waits as past POSTERN_MAX_BODY_MEMORY (421 4.3.2 after POSTERN_DATA_TIMEOUT_MS), even while the total has room, so one client\'s slow large bodies cannot fill the memory every client\'s mail needs; its body begun first always goes on. At most POSTERN_MAX_BODY_MEMORY (equal: no share). Suffixes K, M, G.' },
  { key: 'mtPriorityUntrusted', env: 'POSTERN_MT_PRIORITY_UNTRUSTED', type: { kind: 'bool' }, default: 'false', doc: 'Honour a raised MT-PRIORITY from untrusted, unauthenticated clients (RFC 6710 §5 lets an MTA lower it; by default it is capped at 0).' },
  { key: 'statsIntervalMs', env: 'POSTERN_STATS_INTERVAL_MS', type: { kind: 'duration', min: 0, max: 86400000 }, default: '60000', doc: 'Interval of the "stats" log line (SMTP counters, queue commits and counts); 0 turns it off. A last one is logged at shutdown.' },
  { key: 'delivery', env: 'POSTERN_DELIVERY', type: { kind: 'enum', values: ['off', 'routes', 'mx'] }, default: 'routes', doc: 'Delivery: off (accept and queue only), routes (only to POSTERN_ROUTES and POSTERN_SMARTHOST; other domains wait in the queue), mx (also by DNS MX lookups to the Internet).' },
  { key: 'routes', env: 'POSTERN_ROUTES', type: { kind: 'routes' }, default: '', doc: 'Per-domain routes, e.g. `example.org=lmtp:127.0.0.1:24;*.corp.test=smtp:127.0.0.1:2600;local.test=maildir:/var/mail;hooks.test=webhook:http://127.0.0.1:9000/in;lists.test=pipe:user=vmail /usr/bin/maildrop -d {local}` (docs/delivery.md).' },
  { key: 'smarthost', env: 'POSTERN_SMARTHOST', type: { kind: 'hosts' }, default: '', doc: 'host:port that receives every message without a route (instead of MX lookups); on port 465 it is implicit TLS (RFC 8314), certificate verified.' },
  { key: 'smarthostAuthFile', env: 'POSTERN_SMARTHOST_AUTH_FILE', type: { kind: 'path', optional: true }, default: '', doc: 'Credentials file for AUTH (PLAIN, else LOGIN) to POSTERN_SMARTHOST: lines `user:password`, `host user password` or `[host]:port user:password`; mode 600, owned by postern\'s user or root; re-read when it changes. Needs verified TLS to the smarthost (POSTERN_TLS_POLICY=required, or the smarthost on port 465: implicit TLS). A refused login defers the mail (docs/delivery.md, "Authenticating to a smarthost").' },
  { key: 'mtaSts', env: 'POSTERN_MTA_STS', type: { kind: 'bool' }, default: 'true', doc: 'MTA-STS (RFC 8461) for deliveries by MX (POSTERN_DELIVERY=mx): a recipient domain\'s `enforce` policy is obeyed (only its MX hosts, verified TLS, else deferred) and `testing` failures are reported; policies are cached in the data dir (docs/tls-policy.md).' },
  { key: 'dnssecResolver', env: 'POSTERN_DNSSEC_RESOLVER', type: { kind: 'hosts', defaultPort: 53 }, default: '', doc: 'A validating DNS resolver, host[:port] (port 53 when left out; e.g. a local unbound at `127.0.0.1`), for DANE (RFC 7672) on deliveries by MX: a validated MX answer from it is the MX set delivered to, and its AD bit is trusted, so it must be on this host or reached over a trusted link. Empty = no DANE (docs/tls-policy.md).' },
  { key: 'tlsPolicy', env: 'POSTERN_TLS_POLICY', type: { kind: 'enum', values: ['opportunistic', 'required', 'none'] }, default: 'opportunistic', doc: 'Outbound STARTTLS: opportunistic (when offered), required (never send in plaintext), none.' },
  { key: 'destMaxConnections', env: 'POSTERN_DEST_MAX_CONNECTIONS', type: { kind: 'int', min: 1, max: 10000 }, default: '20', doc: 'Connections open at once to one destination.' },
  { key: 'destMaxMessagesPerConnection', env: 'POSTERN_DEST_MAX_MESSAGES_PER_CONNECTION', type: { kind: 'int', min: 1, max: 1000000 }, default: '1000', doc: 'Messages sent over one connection before it is closed and a new one opened.' },
  { key: 'destTransactionTimeoutMs', env: 'POSTERN_DEST_TRANSACTION_TIMEOUT_MS', type: { kind: 'duration', min: 1000, max: 86400000 }, default: '30m', doc: 'Time one outbound SMTP/LMTP transaction may take as a whole, from MAIL to the last reply to the data (each reply also has its own RFC 5321 timeout, restarted at every reply, so without this a server answering each recipient just in time could hold a 100-recipient transaction for hours). Past it the connection is closed and the recipients not yet answered are deferred 4.4.2. Opening a connection (greeting, EHLO, STARTTLS, AUTH) is bounded by it too, and so is going through a destination\'s hosts: past it no further host is tried until the next attempt.' },
  { key: 'destIdleTimeoutMs', env: 'POSTERN_DEST_IDLE_TIMEOUT_MS', type: { kind: 'duration', min: 100, max: 3600000 }, default: '10s', doc: 'An idle outbound connection is closed (QUIT) after this long.' },
  { key: 'destRate', env: 'POSTERN_DEST_RATE', type: { kind: 'rate' }, default: '', doc: 'Messages per destination and time unit, e.g. `100/s`, `6000/m`; empty = unlimited.' },
  { key: 'destProbeIntervalMs', env: 'POSTERN_DEST_PROBE_INTERVAL_MS', type: { kind: 'duration', min: 100, max: 3600000 }, default: '10s', doc: 'Longest interval between two probes of a destination that is down while messages wait for it: the first after 1 s, then doubling up to this (a probe is one waiting message, one connection). Also caps the circuit breaker\'s open interval. When a probe or any delivery succeeds, the waiting messages are released at once, paced (see docs/queue.md, "Waiting for a destination").' },
  { key: 'deliveryConcurrency', env: 'POSTERN_DELIVERY_CONCURRENCY', type: { kind: 'int', min: 1, max: 100000 }, default: '200', doc: 'Messages being delivered at once, across all destinations.' },
  { key: 'maxDeliveryMemory', env: 'POSTERN_MAX_DELIVERY_MEMORY', type: { kind: 'bytes', min: MiB, max: 2 ** 46 }, default: String(256 * MiB), doc: 'Bytes of messages being delivered at once (each body is in memory while it is sent): no more messages are taken from the queue past it; a message larger than it is delivered alone. With POSTERN_MAX_BODY_MEMORY it bounds the bodies in memory by configuration. Suffixes K, M, G.' },
  { key: 'shaping', env: 'POSTERN_SHAPING', type: { kind: 'path', optional: true }, default: '', doc: 'Shaping file (TOML): limits per provider site (recipient domains, MX host suffixes) and source address: connections, messages per connection, rate, recipients per transaction, TLS, retry schedule, PIPELINING/CHUNKING, suspend patterns; it overrides the POSTERN_DEST_* settings. Re-read when it changes. Adaptive back-off on throttling replies runs with or without it. See docs/shaping.md.' },
  { key: 'retrySchedule', env: 'POSTERN_RETRY_SCHEDULE', type: { kind: 'durations' }, default: '5m,10m,20m,40m,1h', doc: 'Delays before each new attempt after a temporary failure, comma-separated; the last repeats (see docs/delivery.md, "Retries and bounces").' },
  { key: 'maxQueueLifetimeMs', env: 'POSTERN_MAX_QUEUE_LIFETIME', type: { kind: 'duration', min: 1000, max: 31536000000 }, default: '5d', doc: 'A message still undelivered after this long is bounced.' },
  { key: 'deliveryThreads', env: 'POSTERN_DELIVERY_THREADS', type: { kind: 'int', min: 0, max: 64 }, default: '0', doc: 'SMTP/LMTP connections in the main thread (0, the default) or in this many worker threads with destination affinity (each destination pinned to one thread by a hash). See docs/delivery.md, "Where delivery runs".' },
  { key: 'httpHost', env: 'POSTERN_HTTP_HOST', type: { kind: 'host' }, default: '127.0.0.1', doc: 'Address of the HTTP API (injection, queue admin, /metrics, /health). Without POSTERN_API_TOKEN it must be a loopback address.' },
  { key: 'httpPort', env: 'POSTERN_HTTP_PORT', type: { kind: 'port', allowZero: true, optional: true }, default: '8025', doc: 'Port of the HTTP API; empty turns the API off, 0 picks a free port.' },
  { key: 'apiToken', env: 'POSTERN_API_TOKEN', type: { kind: 'string' }, default: '', doc: 'Bearer token required by every HTTP endpoint but /health, /ready and /metrics (and /metrics too with POSTERN_METRICS_AUTH); unset = loopback only.' },
  { key: 'httpMaxConnections', env: 'POSTERN_HTTP_MAX_CONNECTIONS', type: { kind: 'int', min: 1, max: 1000000 }, default: '512', doc: 'Concurrent connections to the HTTP API in total; past it a new connection is closed at once (before, idle connections could take every file descriptor of the process, and SMTP with them). A connection that has not sent its request headers within 10 s is closed.' },
  { key: 'httpMaxConnectionsPerIp', env: 'POSTERN_HTTP_MAX_CONNECTIONS_PER_IP', type: { kind: 'int', min: 0, max: 1000000 }, default: '64', doc: 'Concurrent connections to the HTTP API from one address (an IPv4 address, an IPv6 prefix of POSTERN_IPV6_PREFIX bits); past it a new one is closed at once. 0 = no limit per address (behind a reverse proxy every client has the proxy\'s address: raise it or set 0 there).' },
  { key: 'httpMaxBodyBytes', env: 'POSTERN_HTTP_MAX_BODY_BYTES', type: { kind: 'bytes', min: 1024, max: 2 ** 31 - 1 }, default: String(50 * MiB), doc: 'Largest HTTP request body; larger gets 413.' },
  { key: 'workers', env: 'POSTERN_WORKERS', type: { kind: 'int', min: 1, max: 256 }, default: String(Math.max(1, availableParallelism() - 1)), shownDefault: '*cores - 1*', doc: 'Threads of the filter pool (default: cores - 1, at least 1).' },
  { key: 'filterModules', env: 'POSTERN_FILTER_MODULES', type: { kind: 'list' }, default: '', doc: 'Comma-separated paths of filter modules run in the worker pool before the 250 (see docs/filters.md); empty = no filter stage.' },
  { key: 'filterTimeoutMs', env: 'POSTERN_FILTER_TIMEOUT_MS', type: { kind: 'duration', min: 10, max: 600000 }, default: '30s', doc: 'A filter that takes longer makes the message a temporary failure (451 4.7.1).' },
  { key: 'filterQueue', env: 'POSTERN_FILTER_QUEUE', type: { kind: 'int', min: 1, max: 100000 }, default: '256', doc: 'Messages waiting for a filter worker; when full, new messages get 451 4.3.2.' },
  { key: 'filterBatch', env: 'POSTERN_FILTER_BATCH', type: { kind: 'int', min: 1, max: 1024 }, default: '64', doc: 'Most messages sent to a filter worker in one task. Batches form only while every worker already has work (a message never waits for a batch to fill); 1 = one task per message.' },
  { key: 'spamModel', env: 'POSTERN_SPAM_MODEL', type: { kind: 'path', optional: true }, default: '', doc: 'Spam model file written by `postern spam train`; enables the spam filter in the worker pool (re-read when the file changes).' },
  { key: 'spamTagScore', env: 'POSTERN_SPAM_TAG_SCORE', type: { kind: 'score' }, default: '', doc: 'Score (0-1) from which a message is tagged X-Spam-Status: Yes; empty = the threshold the model chose in training.' },
  { key: 'spamRejectScore', env: 'POSTERN_SPAM_REJECT_SCORE', type: { kind: 'score' }, default: '', doc: 'Score (0-1) from which a message is refused at the end of DATA with 550 5.7.1; empty = never reject (tag only).' },
  { key: 'spamQuarantineScore', env: 'POSTERN_SPAM_QUARANTINE_SCORE', type: { kind: 'score' }, default: '', doc: 'Score (0-1) from which a message is accepted but held in the queue (quarantine) until released; empty = never.' },
  { key: 'authResults', env: 'POSTERN_AUTH_RESULTS', type: { kind: 'bool' }, default: 'false', doc: 'Check SPF, DKIM and DMARC on mail from untrusted, unauthenticated clients and prepend Authentication-Results (authserv-id POSTERN_HOSTNAME) and Received-SPF; runs in the filter pool.' },
  { key: 'dmarcEnforce', env: 'POSTERN_DMARC_ENFORCE', type: { kind: 'bool' }, default: 'false', doc: 'With POSTERN_AUTH_RESULTS: refuse (550 5.7.1) a DMARC failure whose policy is p=reject (pct= honoured); otherwise tag only.' },
  { key: 'authResultsTimeoutMs', env: 'POSTERN_AUTH_RESULTS_TIMEOUT_MS', type: { kind: 'duration', min: 100, max: 600000 }, default: '10s', doc: 'DNS budget per message for the SPF/DKIM/DMARC checks; lookups still pending become temperror (the message is accepted).' },
  { key: 'dkimKeys', env: 'POSTERN_DKIM_KEYS', type: { kind: 'dkim-keys' }, default: '', doc: 'DKIM signing keys, domain:selector:/path/key.pem[,…] (RSA or Ed25519 PEM): mail from trusted or authenticated clients whose From domain (or its parent) has a key is signed (relaxed/relaxed); see POSTERN_SENDER_LOGINS and POSTERN_DKIM_SIGN_TRUSTED for who may be signed for what.' },
  { key: 'eventsUrl', env: 'POSTERN_EVENTS_URL', type: { kind: 'url' }, default: '', doc: 'http(s) URL that receives batched JSON events (received, delivered, deferred, bounced, rejected, complained, feedback, shaping.suspended, alert.raised, alert.cleared), queued durably and retried; empty = off.' },
  { key: 'httpRate', env: 'POSTERN_HTTP_RATE', type: { kind: 'rate' }, default: '', doc: 'Requests per client address to authenticated HTTP endpoints, e.g. `200/s` (burst of twice the per-second rate); past it 429 with Retry-After. Empty = unlimited.' },
  { key: 'deliveryAllowPrivate', env: 'POSTERN_DELIVERY_ALLOW_PRIVATE', type: { kind: 'bool' }, default: 'false', doc: 'Let MX hosts and address literals resolve to private addresses (RFC 1918, CGNAT, IPv6 ULA): an internal mail network. Loopback, link-local, the node itself, multicast and reserved space stay refused; routes reach any address.' },
  { key: 'maxHops', env: 'POSTERN_MAX_HOPS', type: { kind: 'int', min: 1, max: 1000 }, default: '50', doc: 'A message with more Received: headers than this is a mail loop: refused at the end of DATA with 554 5.4.6, bounced with 5.4.6 at delivery (as Postfix hopcount_limit).' },
  { key: 'httpAllowedHosts', env: 'POSTERN_HTTP_ALLOWED_HOSTS', type: { kind: 'domains' }, default: '', doc: 'Comma-separated host names the HTTP API answers to in the Host header, besides IP addresses and localhost (any port). Checked always without POSTERN_API_TOKEN, and with a token once set; other names get 403 (DNS rebinding).' },
  { key: 'metricsAuth', env: 'POSTERN_METRICS_AUTH', type: { kind: 'bool' }, default: 'false', doc: 'Require the POSTERN_API_TOKEN bearer token on /metrics too (by default it is open to scrapers without one). No effect without a token.' },
  { key: 'eventsMax', env: 'POSTERN_EVENTS_MAX', type: { kind: 'int', min: 100, max: 100000000 }, default: '100000', doc: 'Most events kept for the event webhook while it is down or slow; past it the oldest are dropped (postern_events_dropped_total).' },
  { key: 'eventsMaxAgeMs', env: 'POSTERN_EVENTS_MAX_AGE', type: { kind: 'duration', min: 60000, max: 31536000000 }, default: '7d', doc: 'Events older than this are dropped unsent (postern_events_dropped_total).' },
  { key: 'eventsRejectedIntervalMs', env: 'POSTERN_EVENTS_REJECTED_INTERVAL', type: { kind: 'duration', min: 1000, max: 3600000 }, default: '60s', doc: 'Rejections caused by untrusted, unauthenticated SMTP clients become one `rejected` event per client address per interval, with `count` and `since`.' },
  { key: 'alertWindowMs', env: 'POSTERN_ALERT_WINDOW_MS', type: { kind: 'duration', min: 1000, max: 86400000 }, default: '1m', doc: 'Sliding window over which the anomaly alerts measure deferral and bounce rates, per destination and overall, evaluated ten times per window (docs/alerts.md). With 1m, half the mail deferred from a healthy start raises the alert within about 30 s.' },
  { key: 'alertDeferralPercent', env: 'POSTERN_ALERT_DEFERRAL_PERCENT', type: { kind: 'int', min: 1, max: 100 }, default: '20', doc: 'Deferral rate (percent of recipient outcomes in the window) above which a deferral-rate alert is raised, or 3 times the usual rate of that destination if higher; it clears at half its threshold.' },
  { key: 'alertBouncePercent', env: 'POSTERN_ALERT_BOUNCE_PERCENT', type: { kind: 'int', min: 1, max: 100 }, default: '10', doc: 'Bounce rate (percent) above which a bounce-rate alert is raised, or 3 times the usual rate if higher; it clears at half its threshold.' },
  { key: 'alertMinRecipients', env: 'POSTERN_ALERT_MIN_RECIPIENTS', type: { kind: 'int', min: 1, max: 1000000 }, default: '20', doc: 'Fewest recipient outcomes in the window for a rate alert to be raised or cleared (a few deferrals are not a trend).' },
  { key: 'alertTlsFailures', env: 'POSTERN_ALERT_TLS_FAILURES', type: { kind: 'int', min: 0, max: 1000000 }, default: '10', doc: 'Outbound TLS failures (a failed handshake, or STARTTLS refused or missing where TLS is required) in the alert window, per destination, site or overall, that raise a tls-failures alert; 0 = off (docs/alerts.md).' },
  { key: 'alertQueueGrowth', env: 'POSTERN_ALERT_QUEUE_GROWTH', type: { kind: 'int', min: 0, max: 100000000 }, default: '10000', doc: 'Messages by which the queue (not counting held ones) must grow, steadily, over 10 minutes (the [alerts] queue_window) to raise a queue-growth alert; 0 = off.' },
  { key: 'alertQueueAgeMs', env: 'POSTERN_ALERT_QUEUE_AGE_MS', type: { kind: 'duration', min: 0, max: 31536000000 }, default: '1d', doc: 'Age of the oldest queued message (held ones aside) that raises a queue-age alert; it clears at half. 0 = off.' },
  { key: 'alertFilterUtilizationPercent', env: 'POSTERN_ALERT_FILTER_UTILIZATION_PERCENT', type: { kind: 'int', min: 0, max: 100 }, default: '90', doc: 'Share of the filter workers\' time busy that, held for a minute (the [alerts] filter_for), raises a filter-utilization alert; 0 = off.' },
  { key: 'alertFilterWaitMs', env: 'POSTERN_ALERT_FILTER_WAIT_MS', type: { kind: 'duration', min: 0, max: 3600000 }, default: '5s', doc: 'How long the oldest message may wait for a filter worker; past it for a minute (the [alerts] filter_for), a filter-wait alert is raised. 0 = off.' },
  { key: 'eventsToken', env: 'POSTERN_EVENTS_TOKEN', type: { kind: 'string' }, default: '', doc: 'Sent to POSTERN_EVENTS_URL as `Authorization: Bearer`. Credentials in the URL (user:password@) are sent as Basic auth instead; setting both is an error.' },
  { key: 'commandTimeoutMs', env: 'POSTERN_COMMAND_TIMEOUT_MS', type: { kind: 'duration', min: 1000, max: 3600000 }, default: '30s', doc: 'A command line must be complete this long after its first byte (a deadline, not reset by each byte: a client dribbling bytes is cut with 421 4.4.2).' },
  { key: 'stressPercent', env: 'POSTERN_STRESS_PERCENT', type: { kind: 'int', min: 1, max: 100 }, default: '80', doc: 'At this share of POSTERN_MAX_CONNECTIONS the node is under stress: every session deadline (idle, command, data) is capped at POSTERN_STRESS_TIMEOUT_MS.' },
  { key: 'stressTimeoutMs', env: 'POSTERN_STRESS_TIMEOUT_MS', type: { kind: 'duration', min: 1000, max: 3600000 }, default: '10s', doc: 'The deadlines under stress (Postfix uses 10 s).' },
  { key: 'greetDelayMs', env: 'POSTERN_GREET_DELAY_MS', type: { kind: 'duration', min: 0, max: 30000 }, default: '0', doc: 'Hold the greeting back this long for clients outside POSTERN_TRUSTED_NETWORKS; one that talks before it gets 554 5.5.1 and is disconnected (pregreet test, as Postfix postscreen). 0 = greet at once.' },
  { key: 'ipv6Prefix', env: 'POSTERN_IPV6_PREFIX', type: { kind: 'int', min: 32, max: 128 }, default: '64', doc: 'IPv6 clients count against POSTERN_MAX_CONNECTIONS_PER_IP by this prefix (one host usually owns a /64), IPv4 clients by address.' },
  { key: 'minDataRate', env: 'POSTERN_MIN_DATA_RATE', type: { kind: 'int', min: 0, max: 1000000000 }, default: '500', doc: 'Bytes per second message data must keep up, on top of POSTERN_DATA_TIMEOUT_MS: the whole of DATA or a BDAT chunk must arrive within the data timeout plus 1/rate s per byte received (Postfix smtpd_min_data_rate), the time so bought never more than twice the data timeout ahead (no banking hours with a fast start, then dribbling); slower gets 421 4.4.2. 0 = only the per-block timeout.' },
  { key: 'recipients', env: 'POSTERN_RECIPIENTS', type: { kind: 'path', optional: true }, default: '', doc: 'Recipient map file of the local domains (POSTERN_LOCAL_DOMAINS and domains routed to maildir, lmtp or pipe): lines `alice@example.org`, `@example.net` (catch-all), `sales@example.org: alice@example.org, bob@else.test` (alias), `#` comments. A recipient of a local domain not in it gets 550 5.1.1 at RCPT, from every client. Re-read when the file changes (a broken new file keeps the old map). See docs/smtp.md, "Recipients".' },
  { key: 'rcptVerify', env: 'POSTERN_RCPT_VERIFY', type: { kind: 'enum', values: ['off', 'lmtp'] }, default: 'off', doc: 'lmtp: ask the LMTP server of a recipient\'s route at RCPT (LHLO, MAIL FROM:<>, RCPT, RSET); its 5xx becomes 550 5.1.1, no answer 451 4.4.1. Answers are cached (10 min positive, 1 min negative).' },
  { key: 'rcptVerifyTimeoutMs', env: 'POSTERN_RCPT_VERIFY_TIMEOUT_MS', type: { kind: 'duration', min: 100, max: 60000 }, default: '5s', doc: 'Time one POSTERN_RCPT_VERIFY question may take before the RCPT gets 451 4.4.1.' },
  { key: 'maildirCreate', env: 'POSTERN_MAILDIR_CREATE', type: { kind: 'bool' }, default: 'false', doc: 'Let maildir routes create a missing mailbox folder on first delivery. Off: they deliver only into existing `<root>/<domain>/<local>/` folders (others get 550 5.1.1 at RCPT), except that the mailboxes POSTERN_RECIPIENTS lists (not its catch-alls) are created.' },
  { key: 'maildirLineEnds', env: 'POSTERN_MAILDIR_LINE_ENDS', type: { kind: 'enum', values: ['crlf', 'lf'] }, default: 'crlf', doc: 'Line ends of the files maildir routes write: crlf (the bytes as received) or lf (the Unix form most Maildir readers expect). Courier-IMAP needs lf: it adds a CR before every LF it serves, so a CRLF file reaches the client with CR CR LF; Dovecot reads both (docs/interop.md).' },
  { key: 'maxRecipientsUntrusted', env: 'POSTERN_MAX_RECIPIENTS_UNTRUSTED', type: { kind: 'int', min: 1, max: 100000 }, default: '100', doc: 'Recipients per message (after alias expansion) from clients outside POSTERN_TRUSTED_NETWORKS that did not authenticate; more get 452 4.5.3 (RFC 5321 §4.5.3.1.8 asks for at least 100). Bounds one untrusted message to this many copies.' },
  { key: 'authMaxFailures', env: 'POSTERN_AUTH_MAX_FAILURES', type: { kind: 'int', min: 1, max: 100000 }, default: '10', doc: 'Failed AUTH attempts from one client (an IPv4 address, an IPv6 prefix of POSTERN_IPV6_PREFIX bits) before its AUTH gets 454 4.7.0 until POSTERN_AUTH_LOCKOUT_MS after the last failure; a success clears it. Clients in POSTERN_TRUSTED_NETWORKS are exempt (not from the per-user count).' },
  { key: 'authUserMaxFailures', env: 'POSTERN_AUTH_USER_MAX_FAILURES', type: { kind: 'int', min: 1, max: 100000 }, default: '30', doc: 'Failed AUTH attempts against one user name, from any client, before AUTH as that name gets 454 4.7.0 (existing or not: the answers never tell); clients the user logged in from before stay admitted.' },
  { key: 'authLockoutMs', env: 'POSTERN_AUTH_LOCKOUT_MS', type: { kind: 'duration', min: 100, max: 86400000 }, default: '15m', doc: 'A client\'s or user\'s AUTH failures are forgotten this long after the last one.' },
  { key: 'authMaxDelayMs', env: 'POSTERN_AUTH_MAX_DELAY_MS', type: { kind: 'duration', min: 0, max: 60000 }, default: '15s', doc: 'After n AUTH failures of a client or user, each further attempt waits 2^n seconds (Dovecot\'s auth penalty) up to this; 0 = no wait.' },
  { key: 'authConcurrency', env: 'POSTERN_AUTH_CONCURRENCY', type: { kind: 'int', min: 1, max: 64 }, default: String(Math.max(1, Math.min(2, availableParallelism() - 1))), shownDefault: '*cores - 1, at most 2*', doc: 'Password checks (scrypt) running at once, each in a thread of its own, never in libuv\'s pool that file I/O and DNS share (one core is left to the event loop).' },
  { key: 'authQueue', env: 'POSTERN_AUTH_QUEUE', type: { kind: 'int', min: 1, max: 100000 }, default: '100', doc: 'Password checks waiting for a thread; past it AUTH gets 454 4.7.0.' },
  { key: 'senderLogins', env: 'POSTERN_SENDER_LOGINS', type: { kind: 'path', optional: true }, default: '', doc: 'Sender login map: lines `address-or-@domain user[, user…]` saying what each AUTH user may send as. With it, an authenticated MAIL FROM the user is not given gets 553 5.7.1 (<> is allowed) and DKIM signs only a From: the user is given. Unset: any user may use any address and gets any From domain with a key signed.' },
  { key: 'dkimSignTrusted', env: 'POSTERN_DKIM_SIGN_TRUSTED', type: { kind: 'bool' }, default: 'true', doc: 'DKIM-sign mail from POSTERN_TRUSTED_NETWORKS without AUTH for any From domain with a key (the operator\'s own systems); false = sign only authenticated mail.' },
  { key: 'bounceRules', env: 'POSTERN_BOUNCE_RULES', type: { kind: 'path', optional: true }, default: '', doc: 'JSON file of bounce classification rules tried before the shipped ones (or instead of them with `"replace": true`); see docs/bounces.md.' },
  { key: 'verpDomain', env: 'POSTERN_VERP', type: { kind: 'string' }, default: '', doc: 'VERP domain, e.g. `bounces.example.com`: each outbound SMTP envelope sender becomes `b+<id>-<tag>=<local>=<domain>@bounces.example.com` (one transaction per recipient; the tag is an HMAC), and mail to that domain is accepted from anyone and read as DSNs and ARF reports instead of being relayed. Empty = off.' },
  { key: 'verpSecret', env: 'POSTERN_VERP_SECRET', type: { kind: 'string' }, default: '', doc: 'Key of the VERP tag (16 characters or more); empty = a random key kept in `<POSTERN_DATA_DIR>/verp.key` (created on first start). Nodes that share a VERP domain need the same key.' },
  { key: 'bounceAddresses', env: 'POSTERN_BOUNCE_ADDRESSES', type: { kind: 'list' }, default: '', doc: 'Comma-separated addresses of local domains (e.g. the feedback-loop address registered with mailbox providers) whose mail is read as DSNs and ARF reports instead of being delivered.' },
  { key: 'suppressOn', env: 'POSTERN_SUPPRESS_ON', type: { kind: 'list' }, default: 'invalid-recipient,complaint', doc: 'Bounce categories (see docs/bounces.md) whose asynchronous permanent failures add the recipient to the suppression list, and `complaint` for ARF reports; empty = never.' },
  { key: 'maxReportBytes', env: 'POSTERN_MAX_REPORT_BYTES', type: { kind: 'bytes', min: 1024, max: 64 * MiB }, default: String(2 * MiB), doc: 'Largest DSN or ARF report the bounce processor reads; a larger one is counted as delivered and ignored (logged). Of a report only the start is parsed (128 KiB, 1000 lines), which holds its status part and the returned headers (docs/bounces.md).' },
  { key: 'redisUrl', env: 'POSTERN_REDIS_URL', type: { kind: 'redis-url' }, default: '', doc: 'Redis shared by the nodes of a cluster, `redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS): rate limits and connection counts per source × site become cluster-wide (`10/s` is ten a second for all nodes together), and suppressions are shared. Redis down or slow: each node keeps delivering on its share of the limits (docs/scale-out.md). Empty = each node on its own. The password is never logged.' },
  { key: 'redisPrefix', env: 'POSTERN_REDIS_PREFIX', type: { kind: 'string' }, default: 'postern:', doc: 'Prefix of every Redis key postern writes (1-64 characters, no spaces or braces): clusters sharing one Redis need different prefixes.' },
  { key: 'redisTimeoutMs', env: 'POSTERN_REDIS_TIMEOUT_MS', type: { kind: 'duration', min: 10, max: 5000 }, default: '100ms', doc: 'Deadline of every Redis call; past it the call counts as failed and the node decides on its own (local limits). Three in a row, or a lost connection, mark Redis down.' },
  { key: 'redisLeaseMs', env: 'POSTERN_REDIS_LEASE_MS', type: { kind: 'duration', min: 1000, max: 600000 }, default: '15s', doc: 'Life of a node\'s heartbeat and of its connection leases in Redis, renewed every third of it: the connections of a node that died are given back, and it stops counting as live, this long after.' },
  { key: 'tlsrpt', env: 'POSTERN_TLSRPT', type: { kind: 'bool' }, default: 'false', doc: 'Send SMTP TLS reports (RFC 8460): the outcomes of outbound TLS to each policy domain (MTA-STS, DANE) are counted per UTC day (kept in `<POSTERN_DATA_DIR>/tlsrpt.json`) and sent after midnight UTC to the rua of the domain\'s `_smtp._tls` TXT record, by mail through this node or HTTPS POST (docs/delivery.md, "TLS reports").' },
  { key: 'tlsrptOrg', env: 'POSTERN_TLSRPT_ORG', type: { kind: 'string' }, default: '', doc: 'organization-name of the TLS reports and their TLS-Report-Submitter; empty = POSTERN_HOSTNAME.' },
  { key: 'tlsrptContact', env: 'POSTERN_TLSRPT_CONTACT', type: { kind: 'string' }, default: '', doc: 'contact-info of the TLS reports (an address or URL); empty = postmaster@POSTERN_HOSTNAME.' },
];
