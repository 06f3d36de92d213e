// A certificate authority for one test, made with openssl: its root (to trust in the client
// under test) and leaf certificates it signs for a name, valid, expired (notAfter a day before
// notBefore) or for another name. Files in a temp folder removed after the test.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tmpdir } from './tmpdir.js';

export interface Leaf {
  cert: string;
  key: string;
}

export interface TestCa {
  /** The root certificate as PEM text (what a client trusts). */
  readonly pem: string;
  readonly certFile: string;
  /** A leaf for `name` (a DNS name, or an IP address as IP:...). `expired`: its validity ended yesterday. */
  leaf(name: string, opts?: { expired?: boolean }): Leaf;
}

export function makeTestCa(t: TestContext): TestCa {
  const dir = tmpdir(t, 'postern-ca-');
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.pem');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', '/CN=postern test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], { stdio: 'ignore' });
  let serial = 1;
  return {
    pem: readFileSync(caCert, 'utf8'),
    certFile: caCert,
    leaf(name, opts = {}) {
      const n = ++serial;
      const key = join(dir, `leaf${n}.key`);
      const csr = join(dir, `leaf${n}.csr`);
      const cert = join(dir, `leaf${n}.pem`);
      const ext = join(dir, `leaf${n}.ext`);
      execFileSync('openssl', ['req', '-new', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`], { stdio: 'ignore' });
      writeFileSync(ext, `subjectAltName=${/^[\d.]+$|:/.test(name) ? 'IP' : 'DNS'}:${name}\nextendedKeyUsage=serverAuth\n`);
      execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-set_serial', String(n), '-out', cert, '-days', opts.expired ? '-1' : '2', '-extfile', ext], { stdio: 'ignore' });
      return { cert, key };
    },
  };
}
