// One mail transaction (RFC 5321 §3.3): the reverse path with its MAIL parameters and the
// accepted recipients with theirs, until the message is queued or the transaction is reset.
import type { Priority, RecipientInput } from '../queue/store.js';

export interface Transaction {
  sender: string;
  recipients: RecipientInput[];
  priority: Priority;
  mtPriority?: number;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  bodyType?: '7BIT' | '8BITMIME';
  smtputf8: boolean;
  /** RFC 8689 REQUIRETLS: relay only over verified TLS to servers that offer REQUIRETLS. */
  requireTls?: boolean;
  declaredSize?: number;
  /** 'data' or 'bdat' once content started; the two cannot be mixed. */
  mode: 'none' | 'data' | 'bdat';
}

export function newTransaction(sender: string): Transaction {
  return { sender, recipients: [], priority: 1, smtputf8: false, mode: 'none' };
}
