// DKIM signing keys: loadKeys() reads each PEM named by POSTERN_DKIM_KEYS (whose syntax
// config/dkim-keys.ts checks) once and detects the algorithm from the key itself
// (RSA → rsa-sha256, Ed25519 → ed25519-sha256, RFC 8463).
import { readFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import type { DkimKeySpec } from '../../config/dkim-keys.js';
import { PosternError } from '../../errors.js';

export type { DkimKeySpec };
export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

export interface DkimKey extends DkimKeySpec {
  algorithm: DkimAlgorithm;
  key: KeyObject;
}


/** Reads and checks one key; throws an Error naming the entry's domain, selector and file. */
export function loadKey(spec: DkimKeySpec): DkimKey {
  const where = `DKIM key ${spec.domain}:${spec.selector} (${spec.keyFile})`;
  let key: KeyObject;
  try {
    key = createPrivateKey(readFileSync(spec.keyFile));
  } catch (err) {
    throw new PosternError('PST_ERR_DKIM_KEY', `${where}: ${(err as Error).message}`, { cause: err });
  }
  if (key.asymmetricKeyType === 'ed25519') return { ...spec, algorithm: 'ed25519-sha256', key };
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    // Verifiers ignore RSA keys under 1024 bits (RFC 8301 §3.2); 2048 is the norm.
    if (bits < 1024) throw new PosternError('PST_ERR_DKIM_KEY', `${where}: RSA key of ${bits} bits; verifiers require at least 1024 (use 2048)`);
    return { ...spec, algorithm: 'rsa-sha256', key };
  }
  throw new PosternError('PST_ERR_DKIM_KEY', `${where}: unsupported key type ${key.asymmetricKeyType ?? 'unknown'} (expected an RSA or Ed25519 private key)`);
}

/** Loads every key (each file read once). Throws on the first bad one. */
export function loadKeys(specs: readonly DkimKeySpec[]): DkimKey[] {
  return specs.map(loadKey);
}

/**
 * The TXT record to publish at <selector>._domainkey.<domain>: `v=DKIM1; k=rsa; p=<SPKI DER>`
 * or `v=DKIM1; k=ed25519; p=<raw 32-byte key>` (RFC 8463 §4.2).
 */
export function dkimDnsRecord(key: DkimKey | KeyObject): string {
  const k = 'key' in key && 'algorithm' in key ? key.key : (key as KeyObject);
  const pub = k.type === 'private' ? createPublicKey(k) : k;
  if (pub.asymmetricKeyType === 'ed25519') {
    const spki = pub.export({ type: 'spki', format: 'der' });
    return `v=DKIM1; k=ed25519; p=${spki.subarray(spki.length - 32).toString('base64')}`;
  }
  return `v=DKIM1; k=rsa; p=${pub.export({ type: 'spki', format: 'der' }).toString('base64')}`;
}
