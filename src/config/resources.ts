// The second half of resolving the configuration: the files the settings name, read and
// checked once at start-up (the TLS pair, the AUTH users file and sender login map, the DKIM
// keys, the spam model, the recipient map, the bounce rules, the shaping file, the programs
// and users of pipe routes), every problem reported together as one ConfigError
// naming the variable. `postern config` runs it too, so it catches everything `start` would;
// startNode() wires what it returns.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { UserDb } from '../auth/users.js';
import { SenderLogins } from '../auth/sender-logins.js';
import { loadKey } from '../filter/dkim/keys.js';
import { ConfigError } from './load.js';
import { PosternError } from '../errors.js';
import { readRecipientMap, type RecipientMap } from './recipient-map.js';
import { combineBounceRules, parseBounceRules, type BounceRules } from '../lib/bounce-class.js';
import { readShaping, type ShapingFile } from './shaping.js';
import { checkPipeRoutes, type PipeIdentity } from './pipe-routes.js';
import type { Config } from './schema.js';
import { credentialsFor, readCredentialsFile } from './smtp-credentials.js';
import { formatHostPort, type HostPort } from './routes.js';

export interface TlsSetup {
  readonly options: SecureContextOptions;
  readonly context: SecureContext;
}

export interface Resources {
  /** null: no certificate configured (no STARTTLS, no implicit TLS). */
  readonly tls: TlsSetup | null;
  /** null: AUTH is off. */
  readonly users: UserDb | null;
  /** null: no POSTERN_RECIPIENTS. */
  readonly recipients: RecipientMap | null;
  /** null: no POSTERN_SENDER_LOGINS (any user may send as anyone). */
  readonly senderLogins: SenderLogins | null;
  /** The shipped bounce rules, behind POSTERN_BOUNCE_RULES's when set. */
  readonly bounceRules: BounceRules;
  /** null: no POSTERN_SHAPING. */
  readonly shaping: ShapingFile | null;
  /** The uid/gid of the pipe routes that name a user or group, by route pattern. */
  readonly pipeIdentities: ReadonlyMap<string, PipeIdentity>;
}

/** The rule file that ships with postern (copied beside this module by tsc). */
export const SHIPPED_BOUNCE_RULES = new URL('./bounce-rules.json', import.meta.url);
/** An operator's rule file larger than this is a mistake. */
const MAX_RULES_FILE_BYTES = 1024 * 1024;

/** The shipped rules, and the operator's in front when `path` is set; throws naming the file. */
export function readBounceRules(path: string): BounceRules {
  const shipped = parseBounceRules(readFileSync(SHIPPED_BOUNCE_RULES, 'utf8'), 'bounce-rules.json');
  if (!shipped.ok) throw new PosternError('PST_ERR_CONFIG_BOUNCE_RULES', shipped.error);
  if (path === '') return shipped.value.rules;
  const text = readFileSync(path);
  if (text.length > MAX_RULES_FILE_BYTES) throw new PosternError('PST_ERR_CONFIG_BOUNCE_RULES', `${path} is larger than ${MAX_RULES_FILE_BYTES} bytes`);
  const own = parseBounceRules(text.toString('utf8'), path);
  if (!own.ok) throw new PosternError('PST_ERR_CONFIG_BOUNCE_RULES', own.error);
  return combineBounceRules(shipped.value.rules, own.value);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Reads every file the configuration names; throws one ConfigError listing every problem. */
export async function loadResources(config: Readonly<Config>): Promise<Resources> {
  const problems: string[] = [];
  let tls: TlsSetup | null = null;
  if (config.tlsCert !== '') {
    try {
      const options: SecureContextOptions = { cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey), minVersion: 'TLSv1.2' };
      tls = { options, context: createSecureContext(options) };
    } catch (err) {
      problems.push(`POSTERN_TLS_CERT=${JSON.stringify(config.tlsCert)} / POSTERN_TLS_KEY=${JSON.stringify(config.tlsKey)} cannot be loaded: ${message(err)}`);
    }
  }
  let users: UserDb | null = null;
  if (config.authUsers !== '') {
    try {
      users = await UserDb.load(config.authUsers);
    } catch (err) {
      problems.push(`POSTERN_AUTH_USERS=${JSON.stringify(config.authUsers)} is invalid: ${message(err)}`);
    }
  }
  let senderLogins: SenderLogins | null = null;
  if (config.senderLogins !== '') {
    try {
      senderLogins = await SenderLogins.load(config.senderLogins);
    } catch (err) {
      problems.push(`POSTERN_SENDER_LOGINS=${JSON.stringify(config.senderLogins)} is invalid: ${message(err)}`);
    }
  }
  // The worker threads load the keys again (a KeyObject is not sent across); this read is the
  // check, at start-up rather than as a 451 per message later.
  for (const spec of config.dkimKeys) {
    try {
      loadKey(spec);
    } catch (err) {
      problems.push(`POSTERN_DKIM_KEYS is invalid: ${message(err)}`);
    }
  }
  if (config.spamModel !== '') {
    try {
      // Loaded only when configured: the model code is large and most commands never need it.
      const { SpamModel } = await import('../filter/spam/model.js');
      SpamModel.deserialize(readFileSync(config.spamModel));
    } catch (err) {
      problems.push(`POSTERN_SPAM_MODEL=${JSON.stringify(config.spamModel)} is invalid: ${message(err)}`);
    }
  }
  let recipients: RecipientMap | null = null;
  if (config.recipients !== '') {
    try {
      recipients = readRecipientMap(config.recipients);
    } catch (err) {
      problems.push(`POSTERN_RECIPIENTS=${JSON.stringify(config.recipients)} is invalid: ${message(err)}`);
    }
  }
  let bounceRules: BounceRules = { rules: [] };
  try {
    bounceRules = readBounceRules(config.bounceRules);
  } catch (err) {
    problems.push(`POSTERN_BOUNCE_RULES=${JSON.stringify(config.bounceRules)} is invalid: ${message(err)}`);
  }
  let shaping: ShapingFile | null = null;
  if (config.shaping !== '') {
    try {
      shaping = readShaping(config.shaping);
    } catch (err) {
      problems.push(`POSTERN_SHAPING=${JSON.stringify(config.shaping)} is invalid: ${message(err)}`);
    }
  }
  // Outbound AUTH: each credentials file usable (mode, owner, lines) and naming every host it serves.
  const logins: Array<{ setting: string; file: string; hosts: readonly HostPort[] }> = [];
  for (const r of config.routes.routes) if (r.target.kind === 'smtp' && r.target.auth !== undefined) logins.push({ setting: `POSTERN_ROUTES (route "${r.pattern}")`, file: r.target.auth, hosts: r.target.hosts });
  if (config.smarthostAuthFile !== '' && config.smarthost !== null) logins.push({ setting: 'POSTERN_SMARTHOST_AUTH_FILE', file: config.smarthostAuthFile, hosts: config.smarthost });
  for (const l of logins) {
    try {
      const table = readCredentialsFile(l.file);
      const missing = l.hosts.filter((h) => credentialsFor(table, h.host, h.port) === undefined);
      if (missing.length > 0) problems.push(`${l.setting}: ${l.file} has no credentials for ${missing.map(formatHostPort).join(', ')}`);
    } catch (err) {
      problems.push(`${l.setting}: ${message(err)}`);
    }
  }
  // Pipe programs: an executable file each, and a user that may be taken.
  const pipes = checkPipeRoutes(config.routes);
  problems.push(...pipes.problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({ tls, users, recipients, senderLogins, bounceRules, shaping, pipeIdentities: pipes.identities });
}
