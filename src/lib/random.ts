// A small seeded pseudo-random generator for what must repeat exactly from a seed: the spam
// model's folds and shuffles (the trained bytes depend on them) and the seeded test loads.
// Not for anything secret: use node:crypto there.

/** A seeded uniform generator in [0, 1) (fold assignment and shuffles). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
