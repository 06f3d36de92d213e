// The one argument parser of every postern command and subcommand (node:util parseArgs, strict):
// `--help`/`-h` prints the command's usage on stdout and exits 0; an unknown option, a missing
// value or a wrong number of arguments is a usage error (exit 64) that names the problem and
// prints the usage. The sendmail interface is the exception (sendmail-args.ts says why).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PosternError } from '../errors.js';

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

export interface CommandSpec {
  /** The whole help text, starting with "usage: postern …". */
  usage: string;
  options?: OptionSpecs;
  /** How many positional arguments the command takes (default none). */
  positionals?: { min: number; max: number; name?: string };
}

export interface ParsedCommand {
  values: Values;
  positionals: string[];
}

export function usageError(message: string, usage: string): PosternError {
  return new PosternError('PST_ERR_USAGE', `${message}\n\n${usage}`);
}

/** parseArgs' own messages are long and suggest `--`; ours name the option and the command. */
function reword(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const quoted = /'([^' ]+)/.exec(e.message ?? '')?.[1];
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? ''}`.trim();
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      // "Option '--x <value>' argument missing", "Option '--x' argument is ambiguous" (the next
      // word is an option), or "Option '--json' does not take an argument".
      return /does not take/.test(e.message ?? '') ? `option ${quoted ?? ''} takes no value` : `option ${quoted ?? ''} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${quoted ?? ''}`.trim();
    default:
      return e.message ?? String(err);
  }
}

/**
 * Parse `argv` (the arguments after the command's words) against `spec`. Returns null after
 * printing the usage when --help was given.
 */
export function parseCommand(argv: string[], spec: CommandSpec): ParsedCommand | null {
  const options: OptionSpecs = { ...spec.options, help: { type: 'boolean', short: 'h' } };
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true }) as { values: Values; positionals: string[] };
  } catch (err) {
    throw usageError(reword(err), spec.usage);
  }
  if (parsed.values.help === true) {
    process.stdout.write(spec.usage + '\n');
    return null;
  }
  const { min, max, name } = spec.positionals ?? { min: 0, max: 0 };
  const n = parsed.positionals.length;
  if (n > max) throw usageError(`unexpected argument ${JSON.stringify(parsed.positionals[max])}`, spec.usage);
  if (n < min) throw usageError(`missing ${name ?? 'argument'}`, spec.usage);
  return parsed;
}

/** A string option's value (undefined when absent). */
export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

/** A numeric option's value, or a usage error naming it. */
export function num(values: Values, name: string, usage: string, check: (n: number) => boolean = Number.isFinite): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !check(n)) throw usageError(`option --${name}: ${JSON.stringify(v)} is not a valid number here`, usage);
  return n;
}
