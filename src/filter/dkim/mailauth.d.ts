// mailauth ships no types: the parts postern uses (DKIM verification in tests, and the
// signer for comparison). Ambient declarations only; no runtime code.
declare module 'mailauth/lib/dkim/verify.js' {
  export type DkimResolver = (name: string, rrtype: string) => Promise<string[][]>;
  export interface DkimVerifyResult {
    headerFrom: string[];
    envelopeFrom: string | false;
    results: Array<{
      signingDomain?: string;
      selector?: string;
      algo?: string;
      format?: string;
      bodyHash?: string;
      bodyHashExpecting?: string;
      signingHeaders?: { keys: string; headers: string[]; canonicalizedHeader: string };
      status: { result: 'pass' | 'fail' | 'neutral' | 'policy' | 'temperror' | 'permerror' | 'none'; comment?: string; aligned?: string | false };
      info: string;
    }>;
  }
  export function dkimVerify(input: string | Buffer | NodeJS.ReadableStream, options?: { resolver?: DkimResolver; sender?: string; minBitLength?: number; curTime?: Date }): Promise<DkimVerifyResult>;
}

declare module 'mailauth/lib/dkim/sign.js' {
  export interface DkimSignOptions {
    canonicalization?: string;
    algorithm?: string;
    signTime?: Date;
    headerList?: string;
    signatureData: Array<{ signingDomain: string; selector: string; privateKey: string | Buffer; algorithm?: string; canonicalization?: string; maxBodyLength?: number }>;
  }
  export function dkimSign(input: string | Buffer | NodeJS.ReadableStream, options: DkimSignOptions): Promise<{ signatures: string; errors: unknown[] }>;
}
