// Run the real `postern` command line (dist/cli.js) as a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url));

/** Only POSTERN_* from the test, nothing from the outer environment that could leak in. */
export function cleanEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('POSTERN_')) base[k] = v;
  return { ...base, ...env };
}

export function runCli(args: string[], env: Record<string, string>, stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

/**
 * Start `postern start` and resolve once it logs that it listens, with the SMTP port. `command`
 * runs another program in its place (an installed package's `postern`, an embedding example).
 */
export function startCliNode(env: Record<string, string>, command: { file: string; args: string[]; cwd?: string } = { file: process.execPath, args: [CLI, 'start'] }): Promise<{ child: ChildProcess; port: number; httpPort: number | null; logs: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command.file, command.args, { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'], ...(command.cwd ? { cwd: command.cwd } : {}) });
    const logs: string[] = [];
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`node did not start: ${logs.join('\n')}`)), 15000);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        try {
          const j = JSON.parse(line) as { msg?: string; smtpPort?: number; httpPort?: number | null };
          if (j.msg === 'postern listening') {
            clearTimeout(timer);
            resolve({ child, port: j.smtpPort!, httpPort: j.httpPort ?? null, logs });
          }
        } catch {
          // not JSON
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node exited with ${code}: ${logs.join('\n')}`));
    });
  });
}
