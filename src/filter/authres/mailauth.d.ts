// Minimal typings for mailauth 4.9 (it ships none): only what postern uses.
declare module 'mailauth' {
  /** mailauth's DNS hook: like dns.promises.resolve; must throw errors with node's DNS codes (ENOTFOUND, ENODATA, ETIMEOUT, ...). */
  export type MailauthResolver = (name: string, rrtype: string) => Promise<unknown>;

  export interface AuthStatus {
    result: string;
    comment?: string;
    [ptype: string]: unknown;
  }

  export interface AuthenticateOptions {
    sender?: string;
    ip?: string;
    helo?: string;
    trustReceived?: boolean;
    mta?: string;
    minBitLength?: number;
    disableArc?: boolean;
    disableDmarc?: boolean;
    disableBimi?: boolean;
    resolver?: MailauthResolver;
    maxResolveCount?: number;
    maxVoidCount?: number;
  }

  export interface DmarcResult {
    status: AuthStatus;
    domain: string;
    /** The effective policy (sp for an org-domain record with sp, else p); absent when no record. */
    policy?: string;
    p?: string;
    sp?: string;
    pct?: number;
    info?: string;
    error?: string;
  }

  export interface AuthenticateResult {
    dkim: { results?: Array<{ status: AuthStatus; signingDomain?: string; info?: string }>; headerFrom?: string[] | string };
    spf: { status: AuthStatus; domain: string; header: string; info: string } | false | undefined;
    dmarc: DmarcResult | false;
    arc: { status: AuthStatus; info?: string } | false;
    bimi: unknown;
    receivedChain: unknown;
    /** Received-SPF + Authentication-Results (and ARC seals when sealing), CRLF, with a final CRLF. */
    headers: string;
  }

  export function authenticate(message: Buffer | string | NodeJS.ReadableStream, opts?: AuthenticateOptions): Promise<AuthenticateResult>;
}
