// Request bodies: read up to httpMaxBodyBytes and no further (413; server.ts closes the
// connection of any request whose body was not read to the end), and the JSON parse with its 415/400 answers.
import type { IncomingMessage } from 'node:http';
import { fail, type HttpResult } from './respond.js';
import type { RouteContext } from './router.js';
import { failure, success, type Result } from '../lib/result.js';

export type BodyResult = Result<Buffer, HttpResult>;

export function readBody(req: IncomingMessage, limitBytes: number): Promise<BodyResult> {
  const tooBig = (): BodyResult => {
    return failure(fail('PST_HTTP_BODY_TOO_LARGE', `request body over ${limitBytes} bytes (POSTERN_HTTP_MAX_BODY_BYTES)`));
  };
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limitBytes) return Promise.resolve(tooBig());
  return new Promise<BodyResult>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (r: BodyResult): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      resolve(r);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limitBytes) {
        req.pause(); // stop reading: the socket is closed once the 413 is sent
        done(tooBig());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => done(success(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    const onError = (): void => {
        done(failure(fail('PST_HTTP_BAD_REQUEST', 'the request body was cut short')));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

export type JsonResult = Result<Record<string, unknown>, HttpResult>;

/** The deepest nesting of arrays and objects a request body may have (the API's own shapes need 4). */
export const MAX_JSON_DEPTH = 32;
/**
 * The most values (array elements and object members) a request body may have: 10,000
 * recipients with 50 substitutions each, and room beside them. JSON.parse runs on the main
 * thread; unchecked, 50 MiB of nested '[' took 23 s and 2 million keys 4 s, with every SMTP
 * session and delivery waiting.
 */
export const MAX_JSON_VALUES = 600_000;

/**
 * Depth and value count of a JSON text, by a scan that jumps over strings with indexOf (so a
 * large raw message in a string costs almost nothing); stops as soon as a bound is passed.
 * Malformed text is left for JSON.parse to refuse.
 */
export function jsonShapeProblem(b: Buffer, maxDepth = MAX_JSON_DEPTH, maxValues = MAX_JSON_VALUES): string | null {
  let depth = 0;
  let values = 0;
  const n = b.length;
  for (let i = 0; i < n; i++) {
    const c = b[i];
    if (c === 0x22) {
      // A string: on to its closing quote, one not escaped by an odd run of backslashes.
      let j = i;
      for (;;) {
        j = b.indexOf(0x22, j + 1);
        if (j < 0) return null;
        let k = j - 1;
        while (b[k] === 0x5c) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      i = j;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) return `nested deeper than ${maxDepth}`;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    } else if (c === 0x2c) {
      if (++values > maxValues) return `more than ${maxValues} values`;
    }
  }
  return null;
}

/** Content-Type must be application/json (415 otherwise); the body a JSON object (400 otherwise). */
export async function readJsonObject(c: RouteContext): Promise<JsonResult> {
  const type = (c.req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    return failure(fail('PST_HTTP_UNSUPPORTED_MEDIA_TYPE', `Content-Type must be application/json, not ${JSON.stringify(type)}`));
  }
  const b = await c.body();
  if (!b.ok) return b;
  const shape = jsonShapeProblem(b.value);
  if (shape !== null) return failure(fail('PST_HTTP_BAD_JSON', `the body is ${shape}; no request of this API needs that`));
  let value: unknown;
  try {
    value = JSON.parse(b.value.toString('utf8'));
  } catch (err) {
    return failure(fail('PST_HTTP_BAD_JSON', `the body is not valid JSON: ${(err as Error).message}`));
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return failure(fail('PST_HTTP_BAD_JSON', 'the body must be a JSON object'));
  }
  return success(value as Record<string, unknown>);
}
