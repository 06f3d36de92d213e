// Queue failures as HTTP answers: an unknown id is 404, a queue that cannot write (disk or
// map full, I/O error) or is closing is 503 so clients retry. Anything else is a bug: rethrown.
import { PosternError } from '../errors.js';
import { fail, type HttpResult } from './respond.js';

export function queueFailure(err: unknown, id?: string): HttpResult {
  if (err instanceof PosternError) {
    if (err.code === 'PST_ERR_QUEUE_NOT_FOUND') return fail('PST_HTTP_MESSAGE_NOT_FOUND', `no message ${id ?? ''} in the queue`);
    if (err.code === 'PST_ERR_QUEUE_WRITE' || err.code === 'PST_ERR_QUEUE_CLOSED') {
      return fail('PST_HTTP_QUEUE_UNAVAILABLE', `the queue cannot take this now (${err.code}); retry later`, { 'retry-after': '5' });
    }
  }
  throw err;
}
