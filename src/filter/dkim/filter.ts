// The built-in DKIM filter (name `dkim`), run in the filter workers: returns a DKIM-Signature
// header for a message whose single From domain (or its nearest parent) has a key in
// POSTERN_DKIM_KEYS, when the submitter may speak for that From (dkimFilter below). postern's
// Received header, composed on top afterwards, is never signed. Settings: workerData.builtin.dkim
// = { keys, signTrusted }; the keys are read once per worker, on the first message.
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

/**
 * Who is signed for what: an authenticated user for a From address its grants cover
 * (POSTERN_SENDER_LOGINS, carried in envelope.client.senders), or for any From when no map is
 * set; a trusted client without AUTH for any From unless signTrusted is false; nobody else.
 */
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
