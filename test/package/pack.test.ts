// The package as a user gets it: `npm pack` (which rebuilds dist/ through `prepare`), the
// tarball installed without dev dependencies into an empty folder, its `postern start` run on
// free loopback ports with the queue in that folder; it takes a message over SMTP and delivers
// it to a loopback sink, answers /ready and /metrics, and stops on SIGTERM sent to its PID. The
// embedding example of docs/embedding.md then compiles against the installed declarations and
// runs. Not part of `npm test`: npm fetches the dependencies (from its cache or the registry);
// `npm run test:package` runs it, and .ci/run does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCliNode } from '../helpers/cli.js';
import { compileExample, runExample } from '../helpers/embedding-example.js';
import { startScriptedServer } from '../helpers/scripted-server.js';
import { sendMessage } from '../helpers/smtp-client.js';
import { tmpdir } from '../helpers/tmpdir.js';
import { waitFor } from '../helpers/wait-for.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 600_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} in ${cwd} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

test('npm pack: installed without dev dependencies, `postern start` takes a message and delivers it; the embedding example compiles and runs', async (t) => {
  const dir = tmpdir(t, 'postern-pack-');
  run(NPM, ['pack', '--pack-destination', dir], REPO);
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.ok(tgz, `no tarball in ${readdirSync(dir).join(', ')}`);
  const listing = run('tar', ['tzf', join(dir, tgz)], dir).split('\n');
  for (const f of ['dist/cli.js', 'dist/index.js', 'dist/index.d.ts', 'dist/main.d.ts', 'LICENSE', 'README.md', 'docs/embedding.md', 'docs/operations.md', 'contrib/systemd/postern.service', 'scripts/check-dist.mjs', 'scripts/spam-corpus.mjs', 'config/shaping.example.toml']) {
    assert.ok(listing.includes(`package/${f}`), `the package lacks ${f}`);
  }
  for (const f of listing) assert.doesNotMatch(f, /^package\/(src|test|build|bench|data|coverage|node_modules)\//, 'only what runs and its docs');

  const app = join(dir, 'app');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'postern-pack-check', private: true, type: 'module' }));
  run(NPM, ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', join(dir, tgz)], app);
  assert.equal(existsSync(join(app, 'node_modules', 'typescript')), false, 'no dev dependency installed');
  const pkg = JSON.parse(readFileSync(join(app, 'node_modules', 'postern', 'package.json'), 'utf8')) as { version: string; license: string };
  assert.equal(pkg.license, 'MIT');
  assert.match(readFileSync(join(app, 'node_modules', 'postern', 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) 2026 the postern authors\n/);

  const sink = await startScriptedServer(t);
  const node = await startCliNode(
    {
      POSTERN_SMTP_HOST: '127.0.0.1',
      POSTERN_SMTP_PORT: '0',
      POSTERN_HTTP_HOST: '127.0.0.1',
      POSTERN_HTTP_PORT: '0',
      POSTERN_HOSTNAME: 'pack.test.example',
      POSTERN_DATA_DIR: join(dir, 'data'),
      POSTERN_ROUTES: `sink.test=smtp:127.0.0.1:${sink.port}`,
    },
    { file: join(app, 'node_modules', '.bin', 'postern'), args: ['start'], cwd: app },
  );
  const exited = once(node.child, 'exit');
  t.after(() => {
    if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGKILL');
  });
  await sendMessage(node.port, 's@sender.example', ['user@sink.test'], 'Subject: from the packed package\r\n\r\nhello\r\n');
  await waitFor('the sink to receive the message', () => sink.messages().length === 1, { timeoutMs: 30_000, diag: () => node.logs.join('\n') });
  const m = sink.messages()[0]!;
  assert.deepEqual(m.rcptTo, ['RCPT TO:<user@sink.test>']);
  assert.match(m.body.toString(), /^Subject: from the packed package\r$/m);

  const base = `http://127.0.0.1:${node.httpPort}`;
  assert.equal((await fetch(`${base}/ready`)).status, 200);
  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, new RegExp(`^postern_build_info\\{version="${pkg.version.replace(/\./g, '\\.')}",node="${process.version}"\\} 1$`, 'm'));
  await waitFor('the delivery counted', async () => /^postern_deliveries_total\{outcome="delivered"\} 1$/m.test(await (await fetch(`${base}/metrics`)).text()));

  process.kill(node.child.pid!, 'SIGTERM');
  const [code] = (await exited) as [number | null];
  assert.equal(code, 0, node.logs.join('\n'));
  assert.ok(node.logs.some((l) => l.includes('"msg":"stopped"')), 'a clean shutdown');

  // A TypeScript user of the installed package: its declarations and exports.
  const file = compileExample(app);
  await runExample(t, file, join(dir, 'embedded-data'));
});
