// The configuration a command reads: the POSTERN_* environment, plus the variables of
// `--env-file FILE` (the file systemd's EnvironmentFile= names) under it. Loaded on demand:
// the config modules are not needed by `--help`.
import type { Config } from '../config/schema.js';
import { str, type OptionSpecs, type Values } from './args.js';

export const ENV_FILE_OPTION: OptionSpecs = { 'env-file': { type: 'string' } };
export const ENV_FILE_USAGE = '--env-file FILE   read POSTERN_* settings from FILE (KEY=VALUE lines, as systemd\'s EnvironmentFile); the environment wins';

export async function cliConfig(values: Values): Promise<Readonly<Config>> {
  const { loadConfig, loadConfigWithFile } = await import('../config/load.js');
  const file = str(values, 'env-file');
  if (file === undefined) return loadConfig();
  const { readEnvFile } = await import('../config/env-file.js');
  return loadConfigWithFile(readEnvFile(file));
}
