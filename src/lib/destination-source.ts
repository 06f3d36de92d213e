// The egress source named in a destination key. Shaping (delivery/shaping/shaper.ts) ends the
// key of an SMTP or LMTP destination with "~SOURCE" when the message leaves from a pool's
// source ("smtp:mx.example:25@google~ip10"); a reply keeps the key, so the source of a past
// attempt can be read from it (the API's message view, `postern queue show`).

/** The source of an SMTP/LMTP destination key, or null (no pool applied, or another kind). */
export function sourceOfDestination(key: string | undefined): string | null {
  if (key === undefined || !(key.startsWith('smtp:') || key.startsWith('lmtp:'))) return null;
  const i = key.lastIndexOf('~');
  // Host names, ports, sites and source names never hold "~": only the suffix does.
  return i < 0 ? null : key.slice(i + 1) || null;
}
