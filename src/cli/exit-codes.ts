// The exit statuses of every postern command, from BSD's sysexits.h (as sendmail, Postfix and
// most mail software use them), and the one place that maps an error to its status. Scripts
// and callers of `sendmail` branch on these: 75 means "try again later", the rest do not.
import { PosternError, type ErrorCode } from '../errors.js';

export const EX = {
  OK: 0,
  /** A command-specific failure (problems found by `queue check`, an action refused for some messages). */
  FAILURE: 1,
  /** The command line was not understood. */
  USAGE: 64,
  /** The input data was bad (a message sendmail cannot submit as given). */
  DATAERR: 65,
  /** A recipient was refused for good. */
  NOUSER: 67,
  /** The node is not running (or answers nothing useful). */
  UNAVAILABLE: 69,
  /** An unexpected internal error. */
  SOFTWARE: 70,
  /** A temporary failure: the caller should retry later (sendmail when the node is down). */
  TEMPFAIL: 75,
  /** The configuration is wrong or names no queue. */
  CONFIG: 78,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  PST_ERR_USAGE: EX.USAGE,
  PST_ERR_CONFIG_INVALID: EX.CONFIG,
  PST_ERR_QUEUE_MISSING: EX.CONFIG,
  PST_ERR_CLI_NODE_DOWN: EX.UNAVAILABLE,
  PST_ERR_CLI_NODE_REFUSED: EX.FAILURE,
  PST_ERR_SENDMAIL_INPUT: EX.DATAERR,
};

/** The exit status for an error a command threw. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof PosternError) return BY_CODE[err.code] ?? EX.FAILURE;
  return EX.SOFTWARE;
}
