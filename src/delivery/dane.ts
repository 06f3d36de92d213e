// DANE for SMTP (RFC 7672): the TLSA records of an MX set, used only when DNSSEC-validated.
import type { HostPort, TlsaRecord } from './types.js';

export type DaneResult =
  /** Validated TLSA records for at least one MX host (host name → its usable records). */
  | { kind: 'dane'; tlsa: Record<string, TlsaRecord[]> }
  /** No DANE: the MX or TLSA answers are not validated, or there are no usable records. */
  | { kind: 'none'; reason: string }
  /** A validation failure (bogus) or a lookup that failed: try later (RFC 7672 §2.1.1). */
  | { kind: 'defer'; reason: string };

export interface DaneLookup {
  lookup(domain: string, hosts: readonly HostPort[]): Promise<DaneResult>;
}
