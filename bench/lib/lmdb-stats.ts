// Read-only look at an LMDB environment after postern has stopped: its last transaction id is
// the number of write transactions (commits) it has ever made, which — minus the few an idle
// start/stop makes — is the number of commits the load caused, without any hook into postern.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export async function lmdbLastTxnId(path: string): Promise<number | null> {
  if (!existsSync(join(path, 'data.mdb'))) return null;
  try {
    const { open } = await import('lmdb');
    const env = open({ path, readOnly: true });
    try {
      const stats = env.getStats() as { lastTxnId?: number };
      return typeof stats.lastTxnId === 'number' ? stats.lastTxnId : null;
    } finally {
      await env.close();
    }
  } catch {
    return null;
  }
}
