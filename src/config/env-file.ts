// `--env-file FILE`: KEY=VALUE lines as systemd's EnvironmentFile= reads them, so the file a
// unit names can be given to `postern start` and `postern config` as it is. Blank lines and
// lines starting with # or ; are skipped; a value may be 'single-quoted' (literal) or
// "double-quoted" (\" \\ \$ \` and \n escapes); an unquoted value is trimmed and a trailing
// backslash continues it on the next line. No variable expansion, as in systemd.
import { readFileSync } from 'node:fs';
import { ConfigError } from './load.js';

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A larger file is not an environment file (bounds what a wrong path can make us read). */
export const MAX_ENV_FILE_BYTES = 1024 * 1024;

function unquote(v: string, where: string, problems: string[]): string {
  if (v.length >= 2 && v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1);
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) {
    return v.slice(1, -1).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  if (/^["']/.test(v)) problems.push(`${where}: unterminated quote`);
  return v;
}

/** The variables of an environment file's text; problems name `file:line`. */
export function parseEnvFile(text: string, file: string): Record<string, string> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const where = `${file}:${i + 1}`;
    let line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + lines[++i]!.trim();
    const eq = line.indexOf('=');
    const key = eq < 0 ? line : line.slice(0, eq).trim();
    if (eq < 0 || !KEY.test(key)) {
      problems.push(`${where}: not KEY=VALUE`);
      continue;
    }
    if (line.includes('\0')) {
      problems.push(`${where}: NUL in the value`);
      continue;
    }
    out[key] = unquote(line.slice(eq + 1).trim(), where, problems);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

export function readEnvFile(file: string): Record<string, string> {
  let text: Buffer;
  try {
    text = readFileSync(file);
  } catch (err) {
    throw new ConfigError([`--env-file ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`]);
  }
  if (text.length > MAX_ENV_FILE_BYTES) throw new ConfigError([`--env-file ${file}: ${text.length} bytes, more than an environment file (${MAX_ENV_FILE_BYTES})`]);
  return parseEnvFile(text.toString('utf8'), file);
}
