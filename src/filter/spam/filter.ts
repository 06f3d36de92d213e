// The built-in spam filter, run in the filter workers: scores each message with the trained
// model (POSTERN_SPAM_MODEL), tags it (X-Spam-Score, X-Spam-Status, X-Spam-Flag) and rejects it at or
// above POSTERN_SPAM_REJECT_SCORE. The model file is re-read when it changes on disk (checked
// at most every 5 s), so `postern spam train` can replace it without a restart.
import { readFileSync, statSync } from 'node:fs';
import { workerData } from 'piscina';
import { SpamModel } from './model.js';
import type { FilterInput, Verdict } from '../messages.js';

export interface SpamFilterSettings {
  model: string;
  /** Tag as spam at or above this score; null = the model's own threshold. */
  tagScore: number | null;
  /** Reject at or above this score; null = never reject. */
  rejectScore: number | null;
  /** Hold in the queue at or above this score (below rejectScore); null = never. */
  quarantineScore?: number | null;
}

const settings = (workerData as { spam?: SpamFilterSettings } | undefined)?.spam;
let model: SpamModel | null = null;
let loadedMtimeMs = -1;
let checkedAt = 0;

function current(): SpamModel {
  const now = Date.now();
  if (model === null || now - checkedAt > 5000) {
    checkedAt = now;
    const mtime = statSync(settings!.model).mtimeMs;
    if (mtime !== loadedMtimeMs) {
      model = SpamModel.deserialize(readFileSync(settings!.model));
      loadedMtimeMs = mtime;
    }
  }
  return model!;
}

export default function spamFilter({ body }: FilterInput): Verdict {
  if (!settings) return { action: 'accept' };
  const m = current();
  const score = m.score(body);
  const tag = settings.tagScore ?? m.threshold;
  const spam = score >= tag;
  const s = score.toFixed(4);
  // X-Spam-Flag: YES as SpamAssassin writes it, which Sieve rules and MDAs commonly test.
  const headers = `${spam ? 'X-Spam-Flag: YES\r\n' : ''}X-Spam-Score: ${s}\r\nX-Spam-Status: ${spam ? 'Yes' : 'No'}, score=${s} required=${tag.toFixed(4)}\r\n`;
  if (settings.rejectScore !== null && score >= settings.rejectScore) return { action: 'reject', score, reason: `spam score ${s}`, headers };
  if (settings.quarantineScore != null && score >= settings.quarantineScore) return { action: 'quarantine', score, reason: `spam score ${s}`, headers };
  return { action: 'accept', score, headers };
}
