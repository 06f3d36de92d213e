// A certificate authority made with openssl for one test: certificates for given names, in
// or out of their dates (openssl ca -startdate/-enddate), leaf alone or with the CA appended.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tmpdir } from './tmpdir.js';

export interface TestCa {
  /** The CA certificate (PEM): pass it as the trusted CA. */
  caPem: string;
  dir: string;
  /** A key and certificate for `names` (DNS SANs, IP SANs for addresses; the first is the CN). */
  issue(names: string[], o?: { expired?: boolean; withChain?: boolean }): { cert: string; key: string; certPem: string };
}

let serial = 0;

export function makeTestCa(t: TestContext, cn = 'postern test CA'): TestCa {
  const dir = tmpdir(t, 'postern-ca-');
  mkdirSync(join(dir, 'newcerts'));
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  const cnf = join(dir, 'ca.cnf');
  writeFileSync(
    cnf,
    [
      '[ ca ]',
      'default_ca = CA_default',
      '[ CA_default ]',
      `dir = ${dir}`,
      'database = $dir/index.txt',
      'new_certs_dir = $dir/newcerts',
      'serial = $dir/serial',
      'default_md = sha256',
      'policy = policy_any',
      'unique_subject = no',
      'copy_extensions = copy',
      'x509_extensions = leaf_ext',
      '[ leaf_ext ]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth',
      '[ policy_any ]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.pem');
  const run = (args: string[]): void => void execFileSync('openssl', args, { stdio: 'ignore' });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '3', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const caPem = readFileSync(caCert, 'utf8');
  return {
    caPem,
    dir,
    issue(names, o = {}) {
      const n = ++serial;
      const key = join(dir, `leaf${n}.key`);
      const csr = join(dir, `leaf${n}.csr`);
      const cert = join(dir, `leaf${n}.pem`);
      run(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((x) => `${/^[\d.]+$|:/.test(x) ? 'IP' : 'DNS'}:${x}`).join(',')}`]);
      const now = Date.now();
      const stamp = (ms: number): string => new Date(ms).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
      const [from, to] = o.expired ? [now - 20 * 86_400_000, now - 10 * 86_400_000] : [now - 86_400_000, now + 2 * 86_400_000];
      run(['ca', '-batch', '-notext', '-config', cnf, '-cert', caCert, '-keyfile', caKey, '-in', csr, '-out', cert, '-startdate', stamp(from), '-enddate', stamp(to)]);
      let certPem = readFileSync(cert, 'utf8');
      if (o.withChain) {
        certPem += caPem;
        writeFileSync(cert, certPem);
      }
      return { cert, key, certPem };
    },
  };
}
