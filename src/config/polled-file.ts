// A file the configuration names that is re-read while postern runs (the recipient map, the
// shaping file): polled, and re-read when its inode, size or modification time changes.
// Polling rather than fs.watch: an editor's write-and-rename and a replaced symlink are seen
// too (fs.watch would follow the old inode). Each poll is compared with the file as it was when
// last read, not with the previous poll: fs.watchFile takes its baseline at its first poll, so
// a change made between the read and that poll was never seen. A broken new version is
// reported and the previous value kept.
import { stat, statSync, type Stats } from 'node:fs';

export class PolledFile<T> {
  readonly path: string;
  #value: T;
  readonly #read: (path: string) => T;
  readonly #onReload: (err: Error | null, value: T) => void;
  #poll: NodeJS.Timeout | null = null;
  /** The file's signature when it was last read (the value was read just before construction). */
  #seen: string;

  /** `value`: what `read(path)` gave at start-up; `read` throws an Error naming file:line. */
  constructor(path: string, value: T, read: (path: string) => T, onReload: (err: Error | null, value: T) => void) {
    this.path = path;
    this.#value = value;
    this.#read = read;
    this.#onReload = onReload;
    this.#seen = signature(statSync(path, { throwIfNoEntry: false }));
  }

  get current(): T {
    return this.#value;
  }

  /** Read the file again now; on error the old value stays and the error is returned. */
  reload(): Error | null {
    this.#seen = signature(statSync(this.path, { throwIfNoEntry: false }));
    try {
      this.#value = this.#read(this.path);
      this.#onReload(null, this.#value);
      return null;
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      this.#onReload(e, this.#value);
      return e;
    }
  }

  watch(intervalMs: number): void {
    if (this.#poll !== null) return;
    this.#poll = setInterval(() => stat(this.path, this.#checked), intervalMs).unref();
  }

  close(): void {
    if (this.#poll !== null) clearInterval(this.#poll);
    this.#poll = null;
  }

  readonly #checked = (err: Error | null, st?: Stats): void => {
    if (this.#poll === null || signature(err ? undefined : st) === this.#seen) return;
    this.reload();
  };
}

/** What tells one version of the file from another ('' for a missing file). */
function signature(st: Stats | undefined): string {
  return st === undefined ? '' : `${st.ino}:${st.size}:${st.mtimeMs}`;
}
