// A URL as it may be shown: in logs, metric labels, destination keys, the dashboard and
// `postern config`. Userinfo and the query string can carry credentials (a webhook's
// user:password@, a ?token=), so both are masked; the scheme, host, port and path stay.

export function redactUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return '(invalid URL)';
  }
  if (u.username !== '') u.username = '***';
  if (u.password !== '') u.password = '***';
  if (u.search !== '') u.search = '?***';
  u.hash = '';
  return u.href;
}
