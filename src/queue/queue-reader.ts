// A read-only view of a queue folder for the command line (`postern queue`, `queue list`,
// `queue show`): LMDB lets any number of readers share the environment with the one writer, so
// this runs beside a running node and sees its last committed state. It never creates the
// folder or a file in it: a folder without a queue is PST_ERR_QUEUE_MISSING. Changes to the
// queue go through the running node (its HTTP API), the only writer.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { RootDatabase } from 'lmdb';
import { PosternError } from '../errors.js';
import { LAYOUT_VERSION, META } from './keys.js';
import { RecordStore, openQueueEnv } from './record-store.js';
import type { MessageRecord, QueueCounts } from './types.js';
import { headerSection } from '../lib/header-section.js';

export { MAX_HEADER_BYTES } from '../lib/header-section.js';

export class QueueReader {
  readonly path: string;
  readonly #env: RootDatabase;
  readonly #store: RecordStore;

  private constructor(path: string, env: RootDatabase, store: RecordStore) {
    this.path = path;
    this.#env = env;
    this.#store = store;
  }

  /** Open the queue in `path` read-only; PST_ERR_QUEUE_MISSING when there is none. */
  static open(path: string, mapSizeBytes?: number): QueueReader {
    if (!existsSync(join(path, 'data.mdb'))) {
      const why = existsSync(path) ? 'has no data.mdb' : 'does not exist';
      throw new PosternError('PST_ERR_QUEUE_MISSING', `no queue in ${resolve(path)} (POSTERN_DATA_DIR=${path}): the folder ${why}; run in the node's folder or set POSTERN_DATA_DIR`);
    }
    const env = openQueueEnv(path, mapSizeBytes, true);
    try {
      const store = new RecordStore(env, true);
      const layout = store.meta.get(META.layout);
      if (layout !== LAYOUT_VERSION) throw new PosternError('PST_ERR_QUEUE_CORRUPT', `queue layout ${String(layout)} is not ${LAYOUT_VERSION}`);
      return new QueueReader(path, env, store);
    } catch (err) {
      void env.close();
      throw err;
    }
  }

  counts(nowMs = Date.now()): QueueCounts {
    return this.#store.counts(nowMs);
  }

  corruptCount(): number {
    return this.#store.corruptCount();
  }

  /** Records in arrival order (lazily: a large queue is never held in memory). */
  records(): Generator<MessageRecord> {
    return this.#store.records();
  }

  get(id: string): MessageRecord | undefined {
    return this.#store.read(id);
  }

  /** The message's header section (up to the first empty line), at most MAX_HEADER_BYTES; null without a body. */
  headers(id: string): Buffer | null {
    const body = this.#store.bodies.getBinary(id);
    if (body === undefined) return null;
    return headerSection(body).bytes;
  }

  close(): Promise<void> {
    return this.#env.close();
  }
}
