// Every PST_ERR_* code of postern in one table, and the PosternError that carries one.
// Protocol outcomes are values (Reply); errors are for broken systems and bad configuration.

export const ERRORS = {
  PST_ERR_CONFIG_INVALID: 'the configuration has invalid values',
  PST_ERR_CONFIG_BOUNCE_RULES: 'a bounce rule file (the shipped one or POSTERN_BOUNCE_RULES) could not be read, is too large, or has a bad rule',
  PST_ERR_CONFIG_VERP_KEY: 'the VERP key file in the data dir could not be made or read, or holds no key',
  PST_ERR_CONFIG_RECIPIENT_MAP: 'the recipient map (POSTERN_RECIPIENTS) could not be read, is too large, or has a bad line',
  PST_ERR_CONFIG_SMTP_AUTH: 'a credentials file for outbound AUTH (a route\'s /auth= or POSTERN_SMARTHOST_AUTH_FILE) could not be read, is open to group or others, is owned by another user, is too large, or has a bad line',
  PST_ERR_CONFIG_SHAPING: 'the shaping file (POSTERN_SHAPING) could not be read, is too large, or has bad values',
  PST_ERR_QUEUE_WRITE: 'the queue could not durably store a message (disk or map full, or I/O error)',
  PST_ERR_QUEUE_CLOSED: 'the queue is closed',
  PST_ERR_QUEUE_NOT_FOUND: 'no message with that id in the queue',
  PST_ERR_QUEUE_LEASE_LOST: 'the message is leased by another owner (this lease expired and was taken)',
  PST_ERR_QUEUE_CORRUPT: 'a queue record broke an invariant, or the folder holds no queue or one of another layout',
  PST_ERR_QUEUE_CORRUPT_RECORD: 'a queue record could not be decoded (or had no body, or a body no record) and was set aside in the corrupt sub-database (logged, not thrown)',
  PST_ERR_AUTH_USERS_FILE: 'the AUTH users file could not be read or parsed',
  PST_ERR_AUTH_SENDER_LOGINS: 'the sender login map (POSTERN_SENDER_LOGINS) could not be read or parsed',
  PST_ERR_TLS_FILES: 'the TLS certificate or key could not be loaded',
  PST_ERR_LISTEN: 'a listener could not bind its address',
  PST_ERR_LISTEN_FDS: 'the inherited listening sockets (LISTEN_FDS, LISTEN_FDNAMES) do not match the configured listeners',
  PST_ERR_QUEUE_SEQ_FENCED: 'this process handed the rest of the id sequence to a successor (a takeover) and used up its share',
  PST_ERR_TAKEOVER: 'a takeover (SIGUSR2) could not start the new process, or it did not become ready',
  PST_ERR_INVALID_ARGUMENT: 'a function was called with an argument out of range or of the wrong type (a RangeError or TypeError: a bug in the caller)',
  PST_ERR_AUTH_CHECKER: 'the password-checking thread failed, exited, or was closed with a check running',
  PST_ERR_USAGE: 'the command line was not understood',
  PST_ERR_SPAM_MODEL: 'a spam model file is not one postern wrote, or is damaged',
  PST_ERR_SPAM_SPLIT: 'making a spam corpus split failed (scripts/spam-corpus.mjs, or postern spam eval --split-tool FILE)',
  PST_ERR_DKIM_KEY: 'a DKIM signing key could not be read, or is of a kind or size verifiers refuse',
  PST_ERR_FILTER_MODULE: 'a filter module could not be loaded or has no default export function',
  PST_ERR_QUEUE_MISSING: 'the data dir holds no queue (the folder or its data.mdb does not exist)',
  PST_ERR_CLI_NODE_DOWN: 'the running node could not be reached (its HTTP API or SMTP listener)',
  PST_ERR_CLI_NODE_REFUSED: 'the running node refused a command-line request',
  PST_ERR_REDIS_UNAVAILABLE: 'a Redis call (POSTERN_REDIS_URL) failed, passed its deadline, or was not sent because Redis is down: the node decided on its own',
  PST_ERR_SENDMAIL_INPUT: 'the message given to sendmail cannot be submitted as it is',
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class PosternError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code], options);
    this.name = 'PosternError';
    this.code = code;
  }
}
