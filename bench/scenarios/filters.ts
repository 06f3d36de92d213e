// filters: the relay scenario (BENCH_MESSAGES × BENCH_SIZE, relayed to the discarding sink, end
// to end) with the spam model and DKIM signing on — as bulk nodes run — against the same relay
// with them off, in the same run. Variants: off; spam + DKIM Ed25519; spam + DKIM RSA-2048. The
// model is trained here on the synthetic corpus of bench/filter.ts (a real model's size does
// not change the per-message work much: scoring is one pass over the tokens); the keys are
// made here for bench.example, the From domain of both clients, and the loopback client is
// trusted, so every message is scored and signed in the filter pool (POSTERN_WORKERS, default
// cores − 1). Postfix (no filters) runs in the "off" variant only. The summary line gives each
// "on" variant's median as a share of "off".
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { train } from '../../src/filter/spam/train.js';
import { synth } from '../filter.js';
import { median } from '../lib/report.js';
import { interleave, kib, relayRun, relayTargets, type Knobs, type Measurement, type Scenario } from './common.js';

type Variant = 'off' | 'spam + dkim ed25519' | 'spam + dkim rsa2048';
const VARIANTS: Variant[] = ['off', 'spam + dkim ed25519', 'spam + dkim rsa2048'];

/** The model and the two keys in a temp folder; the env of each variant. */
function setup(dir: string): Record<Variant, Record<string, string>> {
  const model = join(dir, 'spam.model');
  writeFileSync(model, train(synth(200, true, 1), synth(300, false, 2), { folds: 3, bits: 16 }).serialize());
  const ed = join(dir, 'ed25519.pem');
  const rsa = join(dir, 'rsa2048.pem');
  writeFileSync(ed, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return {
    off: {},
    'spam + dkim ed25519': { POSTERN_SPAM_MODEL: model, POSTERN_DKIM_KEYS: `bench.example:bench:${ed}` },
    'spam + dkim rsa2048': { POSTERN_SPAM_MODEL: model, POSTERN_DKIM_KEYS: `bench.example:bench:${rsa}` },
  };
}

export function filtersSummary(ms: Measurement[]): string {
  const rate = (v: Variant) => median(ms.filter((m) => m.ok && m.target === 'postern' && m.variant === v).map((m) => m.msgsPerSec));
  const off = rate('off');
  const cpu = (v: Variant, key: string) => median(ms.filter((m) => m.ok && m.target === 'postern' && m.variant === v && typeof m.detail?.[key] === 'number').map((m) => m.detail![key] as number));
  const split = VARIANTS.map((v) => `${v} ${cpu(v, 'mainThreadCpuMsPerMsg').toFixed(2)} + ${cpu(v, 'otherThreadsCpuMsPerMsg').toFixed(2)}`).join(', ');
  const busy = VARIANTS.map((v) => `${v} ${cpu(v, 'machineBusyPct').toFixed(0)} %`).join(', ');
  return `filters: ${VARIANTS.slice(1).map((v) => `${v} ${Math.round(rate(v))} msg/s = ${((100 * rate(v)) / off).toFixed(0)} %`).join(', ')} of off (${Math.round(off)} msg/s); postern CPU ms/msg, main thread + other threads: ${split}; machine busy (all cores, load and sink included): ${busy}`;
}

export const filters: Scenario = {
  name: 'filters',
  describe: (k) => `relay to a sink with the spam model and DKIM signing (Ed25519, RSA-2048) on, against off: ${k.messages} × ${kib(k.size)}, ${k.connections} inbound sessions (peers in "off" only)`,
  targets: relayTargets,
  async run(k: Knobs): Promise<Measurement[]> {
    const dir = mkdtempSync(join(tmpdir(), 'postern-bench-filters-'));
    try {
      const env = setup(dir);
      const out: Measurement[] = [];
      for (const v of VARIANTS) {
        const targets = v === 'off' ? relayTargets(k) : (['postern'] as const);
        out.push(...(await interleave(k, 'filters', [v], [...targets], (x) => x, (_v, t, run) => relayRun(k, { scenario: 'filters', variant: v, x: null, target: t, run, messages: k.messages, size: k.size, recipients: 1, posternEnv: t === 'postern' ? env[v] : {} }))));
      }
      const last = out.filter((m) => m.ok && m.target === 'postern').at(-1);
      if (last) last.detail = { ...last.detail, summary: filtersSummary(out) };
      return out;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
