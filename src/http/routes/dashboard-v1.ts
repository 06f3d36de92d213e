// GET /: the live dashboard (dashboard-page.ts), a static page that polls GET /v1/stats.
//
// The page itself needs no token, on purpose: a browser cannot send a Bearer header when it
// navigates, and the fragment (#token=…) that carries the token to the page is never sent to
// the server, so a token-protected shell could never load. The shell holds no data (the same
// bytes for everyone); every number comes from /v1/stats, which requires the token like the
// other /v1 endpoints. Open http://host:port/#token=<POSTERN_API_TOKEN>.
//
// A strict Content-Security-Policy pins the one inline style and the one inline script by
// hash and allows only same-origin fetches: no external request, and injected markup (a
// hostile domain name) could not run even if it slipped past textContent.
import { createHash } from 'node:crypto';
import type { Api } from '../api.js';
import { DASHBOARD_HTML, DASHBOARD_SCRIPT, DASHBOARD_STYLE } from '../dashboard-page.js';
import type { HttpResult } from '../respond.js';
import type { Route } from '../router.js';

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(DASHBOARD_SCRIPT)}`,
  `style-src ${sha256(DASHBOARD_STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const page: HttpResult = {
  status: 200,
  text: DASHBOARD_HTML,
  contentType: 'text/html; charset=utf-8',
  headers: { 'content-security-policy': DASHBOARD_CSP, 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' },
};

export const dashboardV1: Route<Api> = {
  method: 'GET',
  path: '/',
  auth: false,
  handler: () => page,
};
