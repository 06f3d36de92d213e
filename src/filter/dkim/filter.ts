// The built-in DKIM filter (name `dkim`), run in the filter workers: signs mail whose
// RFC5322.From domain — or its nearest parent domain — has a key in POSTERN_DKIM_KEYS, by
// returning a DKIM-Signature header (relaxed/relaxed, rsa-sha256 or ed25519-sha256), when the
// submitter may speak for that From: an authenticated user whose grants (POSTERN_SENDER_LOGINS,
// carried in envelope.client.senders) cover the From address, or any authenticated user when
// no map is set; a trusted client without AUTH unless signTrusted is off. The signature covers
// the message's own header fields; postern's Received header, composed on top afterwards, is
// not signed. Anyone else's mail, or mail without a single From, passes unsigned.
// Settings: workerData.builtin.dkim = { keys: [{ domain, selector, keyFile }], signTrusted };
// the keys are read once per worker, on the first message.
import { workerData } from 'piscina';
import type { FilterInput, Verdict } from '../messages.js';
import { loadKeys, type DkimKey, type DkimKeySpec } from './keys.js';
import { signMessage, type SignOptions } from './sign.js';
import { isGranted } from '../../lib/sender-grant.js';

export interface DkimFilterSettings {
  keys: DkimKeySpec[];
  /** Sign for trusted clients without AUTH (default true). */
  signTrusted?: boolean;
}

const settings = (workerData as { builtin?: { dkim?: DkimFilterSettings } } | undefined)?.builtin?.dkim;
let keys: Map<string, DkimKey> | null = null;

function current(): Map<string, DkimKey> {
  // Not cached on failure: a key file fixed on disk is picked up by the next message
  // (start-up validates them, so this is for files that vanish while running).
  keys ??= new Map(loadKeys(settings?.keys ?? []).map((k) => [k.domain, k]));
  return keys;
}

export default function dkimFilter({ envelope, body }: FilterInput): Verdict {
  const c = envelope.client;
  if (!settings) return { action: 'accept' };
  const opts: SignOptions = {};
  if (c.authUser !== undefined) {
    const senders = c.senders;
    if (senders !== undefined) {
      if (senders.length === 0) return { action: 'accept' };
      const grants = new Set(senders);
      opts.fromAllowed = (address) => isGranted(grants, address);
    }
  } else if (!c.trusted || settings.signTrusted === false) {
    return { action: 'accept' };
  }
  const keyMap = current(); // throws (→ tempfail) rather than send unsigned when a key is unreadable
  if (keyMap.size === 0) return { action: 'accept' };
  const signed = signMessage(body, keyMap, opts);
  return signed ? { action: 'accept', headers: signed.header } : { action: 'accept' };
}
