// DeadlineQueue: many deadlines on one Node timer. The items sit in a binary min-heap ordered by
// deadline, and a single timer is armed for the earliest one, so a deadline costs its item one
// number field and two array slots instead of a Timeout object (about 120 bytes of heap, plus
// its boxed numbers) each: at 10,000 idle SMTP sessions that is over 1 MB. Deadlines are exact
// to the millisecond, as Node's own timers are; moving one costs O(log n).

/**
 * An item with at most one deadline. `deadlineSlot` belongs to the queue (the item's index in
 * its heap, -1 when it has no deadline): the item only sets it to -1 when it is made.
 */
export interface DeadlineItem {
  deadlineSlot: number;
}

/*
 * The heap, as two parallel arrays (a double array keeps its numbers unboxed):
 *
 *   #items  [ a ][ b ][ c ][ d ][ e ]      slot i's children are 2i+1 and 2i+2;
 *   #at     [ 10][ 40][ 25][ 90][ 41]      #at[i] <= #at of both children; #at[0] is the earliest
 *
 * The timer is armed for a time at or before #at[0] (#timerAt). A deadline that moves later
 * leaves it alone: when it fires early, it is simply armed again for the new earliest.
 */
export class DeadlineQueue<T extends DeadlineItem> {
  readonly #items: T[] = [];
  readonly #at: number[] = [];
  readonly #expire: (item: T) => void;
  #timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (performance.now() ms); Infinity when none is armed. */
  #timerAt = Infinity;
  readonly #fire = (): void => this.#onTimer();

  /** expire: called once for each item whose deadline has passed (its deadline is gone by then). */
  constructor(expire: (item: T) => void) {
    this.#expire = expire;
  }

  get size(): number {
    return this.#items.length;
  }

  /** Give `item` the deadline `ms` from now (at least 1 ms), replacing the one it had. */
  set(item: T, ms: number): void {
    const at = performance.now() + Math.max(1, ms);
    const slot = item.deadlineSlot;
    if (slot < 0) {
      const i = this.#items.length;
      this.#items.push(item);
      this.#at.push(at);
      item.deadlineSlot = i;
      this.#up(i);
    } else {
      const before = this.#at[slot]!;
      this.#at[slot] = at;
      if (at < before) this.#up(slot);
      else this.#down(slot);
    }
    if (at < this.#timerAt) this.#arm(at);
  }

  /** Drop `item`'s deadline, if it has one. */
  clear(item: T): void {
    const slot = item.deadlineSlot;
    if (slot < 0) return;
    item.deadlineSlot = -1;
    const last = this.#items.length - 1;
    const moved = this.#items.pop()!;
    const movedAt = this.#at.pop()!;
    if (slot !== last) {
      this.#place(slot, moved, movedAt);
      this.#up(slot);
      this.#down(moved.deadlineSlot);
    }
    if (this.#items.length === 0) this.#disarm();
  }

  #onTimer(): void {
    this.#timer = null;
    this.#timerAt = Infinity;
    // Items given a deadline by an expire callback are due after `now` (1 ms at least), so
    // this loop ends.
    const now = performance.now();
    while (this.#items.length > 0 && this.#at[0]! <= now) {
      const item = this.#items[0]!;
      this.clear(item);
      this.#expire(item);
    }
    if (this.#items.length > 0 && this.#at[0]! < this.#timerAt) this.#arm(this.#at[0]!);
  }

  #arm(at: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerAt = at;
    // Node's timers run on the event loop's clock, which may lag performance.now(): a timer
    // that fires a little early finds nothing due and is armed again for the rest.
    this.#timer = setTimeout(this.#fire, Math.max(1, Math.ceil(at - performance.now()))).unref();
  }

  #disarm(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }

  /** Sift the item at slot i towards the root while its deadline is earlier than its parent's. */
  #up(i: number): void {
    const item = this.#items[i]!;
    const t = this.#at[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.#at[p]! <= t) break;
      this.#place(i, this.#items[p]!, this.#at[p]!);
      i = p;
    }
    this.#place(i, item, t);
  }

  /** Sift the item at slot i towards the leaves while a child's deadline is earlier. */
  #down(i: number): void {
    const at = this.#at;
    const n = at.length;
    const item = this.#items[i]!;
    const t = at[i]!;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && at[c + 1]! < at[c]!) c++;
      if (at[c]! >= t) break;
      this.#place(i, this.#items[c]!, at[c]!);
      i = c;
    }
    this.#place(i, item, t);
  }

  #place(i: number, item: T, at: number): void {
    this.#items[i] = item;
    this.#at[i] = at;
    item.deadlineSlot = i;
  }
}
