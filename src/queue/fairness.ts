// The fairness rule of lease(): a weighted rotation over the three priorities. Each lease
// slot has a preferred priority taken from a fixed 12-slot cycle (8 urgent, 3 normal, 1 bulk,
// interleaved); the slot takes the oldest due message of that priority, or, if there is none,
// of the highest priority that has one (work-conserving). So whatever floods the queue, the
// oldest due message of a priority is taken within 2 picks (urgent), 6 (normal) or 12 (bulk).
import type { Priority } from './types.js';

export const FAIRNESS_CYCLE: readonly Priority[] = [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 2];

/**
 * Most picks (counting the one that takes it) until the oldest due message of a priority is
 * taken, whatever else is due: the longest gap between two slots preferring it, plus one.
 */
export const STARVATION_BOUND = { urgent: 2, normal: 6, bulk: 12 } as const;

export class FairRotation {
  private slot = 0;

  /** The priority preferred by the next slot; advances the rotation. */
  next(): Priority {
    const p = FAIRNESS_CYCLE[this.slot]!;
    this.slot = this.slot + 1 === FAIRNESS_CYCLE.length ? 0 : this.slot + 1;
    return p;
  }

  /** Undo the last `n` advances (picks chosen and then not taken). */
  rewind(n: number): void {
    const len = FAIRNESS_CYCLE.length;
    this.slot = (((this.slot - n) % len) + len) % len;
  }

  /**
   * Choose the priority for the next pick given which priorities still have due messages,
   * or -1 when none has (the rotation does not advance then).
   */
  pick(has: (p: Priority) => boolean): Priority | -1 {
    if (!has(0) && !has(1) && !has(2)) return -1;
    const preferred = this.next();
    if (has(preferred)) return preferred;
    return has(0) ? 0 : has(1) ? 1 : 2;
  }
}
