// The two views of the spam tokens (model format 3): every token is either content (body and
// subject words, "long:", link hosts, structure: view 0) or header (the other header tokens,
// Received, Message-ID, header order: view 1). With views = 2 a header token's bucket is offset
// by 2^bits, and a message that came through a mailing list also gets the fact LIST_TOKEN.

// prefixes of tokens on the content side besides the bare (prefix-free) words
const CONTENT_PREFIXES = new Set(['long', 'url', 'meta', 'part', 'cs', 'enc', 'file']);

/**
 * The token (with two views) of a message that came through a mailing list; no word or
 * header token can be this string (NUL is never part of one).
 */
export const LIST_TOKEN = '\0list';

/**
 * The view of a token string: 0 content (body and subject words, "long:", link hosts,
 * structure), 1 header (everything else). tokenBuckets does not look at the strings: it knows
 * the side from where it is in the message, and a test holds it to this rule.
 */
export function tokenView(token: string): 0 | 1 {
  const c = token.indexOf(':');
  return c < 0 || CONTENT_PREFIXES.has(token.slice(0, c)) ? 0 : 1;
}
