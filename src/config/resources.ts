// The second half of resolving the configuration: the files the settings name, read and
// checked once at start-up (the TLS pair, the AUTH users file and sender login map, the DKIM
// keys, the spam model, the recipient map, the shaping file), every problem reported together as one ConfigError
// naming the variable. `postern config` runs it too, so it catches everything `start` would;
// startNode() wires what it returns.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { UserDb } from '../auth/users.js';
import { SenderLogins } from '../auth/sender-logins.js';
import { loadKey } from '../filter/dkim/keys.js';
import { ConfigError } from './load.js';
import { readRecipientMap, type RecipientMap } from './recipient-map.js';
import { readShaping, type ShapingFile } from './shaping.js';
import type { Config } from './schema.js';

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
  /** null: no POSTERN_SHAPING. */
  readonly shaping: ShapingFile | null;
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
  let shaping: ShapingFile | null = null;
  if (config.shaping !== '') {
    try {
      shaping = readShaping(config.shaping);
    } catch (err) {
      problems.push(`POSTERN_SHAPING=${JSON.stringify(config.shaping)} is invalid: ${message(err)}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({ tls, users, recipients, senderLogins, shaping });
}
