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

/** Content-Type must be application/json (415 otherwise); the body a JSON object (400 otherwise). */
export async function readJsonObject(c: RouteContext): Promise<JsonResult> {
  const type = (c.req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    return failure(fail('PST_HTTP_UNSUPPORTED_MEDIA_TYPE', `Content-Type must be application/json, not ${JSON.stringify(type)}`));
  }
  const b = await c.body();
  if (!b.ok) return b;
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
