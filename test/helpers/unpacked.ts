// Programs that scripts/unpack-mta.sh unpacked into a private folder (they cannot be installed
// beside Postfix): where the wrapper of each is, the package versions, and the reason a test
// skips when one is missing.
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** The same rule as the script: $POSTERN_INTEROP_CACHE, else /var/cache/… for root, else ~/.cache/…. */
export function interopCache(): string {
  const own = process.env.POSTERN_INTEROP_CACHE;
  if (own !== undefined && own !== '') return own;
  return (process.getuid?.() ?? 0) === 0 ? '/var/cache/postern-interop' : join(homedir(), '.cache', 'postern-interop');
}

/** The wrapper of `program` of `system` ("maildrop", "exim"), or null when it is not unpacked. */
export function unpackedProgram(system: string, program: string): string | null {
  const p = join(interopCache(), system, 'bin', program);
  return existsSync(p) && existsSync(join(interopCache(), system, '.done')) ? p : null;
}

/** The unpacked root folder of a system (its /etc, /usr, …). */
export function unpackedRoot(system: string): string {
  return join(interopCache(), system, 'root');
}

/** "package version" lines the script recorded. */
export function unpackedVersions(system: string): string {
  const p = join(interopCache(), system, 'versions');
  return existsSync(p) ? readFileSync(p, 'utf8').trim() : '';
}

export function skipReason(system: string, program: string): string | false {
  return unpackedProgram(system, program) ? false : `${system} is not unpacked in ${interopCache()} (run scripts/unpack-mta.sh ${system})`;
}
