// URLs made safe to show: userinfo (RFC 3986 §3.2.1, user:password@) and the query (where
// tokens travel, e.g. ?key=…) become "***", so a URL can name a destination in metric labels,
// logs, replies and `postern config` without printing its secret. The real URL stays with
// whoever makes the request.

const MASK = '***';
/** http(s) URLs inside a longer text (POSTERN_ROUTES separates its entries with ";"). */
const URLS_IN_TEXT = /\bhttps?:\/\/[^\s;"'<>]+/gi;

/** `http://u:p@host/path?k=v#f` → `http://***@host/path?***`; a URL without secrets is unchanged. */
export function redactUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    // Not a URL: mask what looks like userinfo and a query anyway.
    return text.replace(/\/\/[^/?#]*@/, `//${MASK}@`).replace(/\?[^#]*/, `?${MASK}`);
  }
  if (u.username === '' && u.password === '' && u.search === '' && u.hash === '') return text;
  const userinfo = u.username !== '' || u.password !== '' ? `${MASK}@` : '';
  const query = u.search !== '' ? `?${MASK}` : '';
  // The fragment is never sent; it is dropped rather than shown.
  return `${u.protocol}//${userinfo}${u.host}${u.pathname}${query}`;
}

/** Every http(s) URL in `text` redacted; the rest of the text unchanged. */
export function redactUrls(text: string): string {
  return text.replace(URLS_IN_TEXT, (m) => redactUrl(m));
}
