// What one outbound TLS attempt came to, as SMTP TLS reporting (RFC 8460) counts it: the
// policy that applied to the recipient domain (MTA-STS, DANE or none found) and the result
// (success, or one of the RFC's failure result types). The policy side (MTA-STS, DANE) reports
// each attempt to a TlsOutcomeSink; the reporter (TLS-RPT aggregates) is one such sink.

/** RFC 8460 §4.3 policy-type. */
export type TlsPolicyType = 'sts' | 'tlsa' | 'no-policy-found';

/** RFC 8460 §4.3 result-type values for failures. */
export type TlsFailureType =
  // negotiation failures
  | 'starttls-not-supported'
  | 'certificate-host-mismatch'
  | 'certificate-expired'
  | 'certificate-not-trusted'
  | 'validation-failure'
  // policy failures
  | 'tlsa-invalid'
  | 'dnssec-invalid'
  | 'dane-required'
  | 'sts-policy-fetch-error'
  | 'sts-policy-invalid'
  | 'sts-webpki-invalid';

export interface TlsOutcome {
  /** The recipient domain whose policy applied (lower-case, A-labels). */
  policyDomain: string;
  policy: {
    type: TlsPolicyType;
    /** MTA-STS: the policy file's lines; DANE: the TLSA records in presentation form. */
    strings?: string[];
    /** MTA-STS: the policy's mx patterns. */
    mxHosts?: string[];
  };
  /** The MX host name postern connected to (or tried to). */
  mxHost: string;
  /** The address it connected to, when a connection was made. */
  receivingIp?: string;
  /** 'success', or the failure type with a short detail (bounded by the caller to 200 chars). */
  result: 'success' | { failure: TlsFailureType; detail?: string };
  /** When it happened (ms since the epoch). */
  at: number;
}

export interface TlsOutcomeSink {
  record(outcome: TlsOutcome): void;
}
