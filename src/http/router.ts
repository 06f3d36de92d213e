// A tiny router: exact segments and `:name` parameters, matched segment by segment. It tells
// "no such path" (404) from "path exists, wrong method" (405, with Allow). A route table of a
// dozen entries needs no radix tree; a linear scan is cheaper than building one.
import type { IncomingMessage } from 'node:http';
import type { HttpResult } from './respond.js';
import type { BodyResult } from './body.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RouteContext {
  readonly req: IncomingMessage;
  readonly url: URL;
  readonly params: Readonly<Record<string, string>>;
  /** The client's address (IPv4-mapped IPv6 shown as IPv4). */
  readonly clientIp: string;
  /** The request body, read up to httpMaxBodyBytes (only called by routes that take one). */
  readonly body: () => Promise<BodyResult>;
}

export interface Route<D> {
  readonly method: Method;
  /** e.g. '/v1/queue/messages/:id'; also the `route` label of the request metric. */
  readonly path: string;
  /** false only for /health, /ready and /metrics. */
  readonly auth: boolean;
  readonly handler: (c: RouteContext, deps: D) => HttpResult | Promise<HttpResult>;
}

export type MatchResult<D> =
  | { kind: 'found'; route: Route<D>; params: Record<string, string> }
  | { kind: 'method'; path: string; allow: Method[] }
  | { kind: 'none' }
  | { kind: 'bad-path' };

export class Router<D> {
  readonly #routes: { route: Route<D>; segs: string[] }[] = [];

  add(...routes: Route<D>[]): this {
    for (const route of routes) this.#routes.push({ route, segs: route.path.split('/').slice(1) });
    return this;
  }

  match(method: string, pathname: string): MatchResult<D> {
    const raw = pathname.split('/').slice(1);
    let segs: string[];
    try {
      segs = raw.map(decodeURIComponent);
    } catch {
      return { kind: 'bad-path' };
    }
    // HEAD is GET without a body (node:http drops the body of a HEAD response).
    const m = method === 'HEAD' ? 'GET' : method;
    let allow: Method[] | null = null;
    let path = '';
    for (const { route, segs: pattern } of this.#routes) {
      const params = matchSegments(pattern, segs);
      if (params === null) continue;
      if (route.method === m) return { kind: 'found', route, params };
      (allow ??= []).push(route.method);
      path = route.path;
    }
    return allow === null ? { kind: 'none' } : { kind: 'method', path, allow };
  }
}

function matchSegments(pattern: string[], segs: string[]): Record<string, string> | null {
  if (pattern.length !== segs.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segs[i]!;
    if (p.startsWith(':')) {
      if (s === '') return null;
      params[p.slice(1)] = s;
    } else if (p !== s) {
      return null;
    }
  }
  return params;
}
