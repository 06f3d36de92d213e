// The state a message is listed under (GET /v1/queue/messages, `postern queue list`, the
// dashboard): the stored state with 'ready' split as the queue counts split it, into ready
// (due now) and scheduled (next attempt later). One rule for the API, the CLI and the counts.
import type { MessageRecord } from './types.js';

export type ListState = 'ready' | 'scheduled' | 'leased' | 'held';
export const LIST_STATES: readonly ListState[] = ['ready', 'scheduled', 'leased', 'held'];

export function listState(m: MessageRecord, nowMs: number): ListState {
  return m.state === 'ready' && m.nextAttemptAt > nowMs ? 'scheduled' : m.state;
}
