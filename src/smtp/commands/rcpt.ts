// RCPT TO (RFC 5321 §4.1.1.3) with DSN NOTIFY/ORCPT (RFC 3461 §4.1–4.2), the recipient
// limit (§4.5.3.1.8: 452 when exceeded) and relay control: a domain outside
// POSTERN_LOCAL_DOMAINS needs a trusted network or an authenticated session (550 5.7.1), and
// so does a local address whose local part routes on (user%host, host!user, "user@host").
// A recipient of a local domain must then exist (recipient-check.ts: map, Maildir names,
// LMTP verification); an alias is replaced by its targets, and duplicates are kept once.
import { decodeXtext, domainOf, hasRoutingLocalPart, parsePathArgs } from '../../protocol/address.js';
import { R, reply, type Reply } from '../../protocol/reply.js';
import type { RecipientInput } from '../../queue/store.js';
import type { Session } from '../session.js';
import type { Transaction } from '../transaction.js';
import { checkRecipient, type RecipientCheckResult } from '../recipient-check.js';

const NOTIFY = new Set(['SUCCESS', 'FAILURE', 'DELAY']);

/** The recipients of each transaction, to store a recipient named twice once (no copy per RCPT). */
const SEEN = new WeakMap<Transaction, Set<string>>();

/** The domain compares case-insensitively, the local part exactly (RFC 5321 §2.4: it may be case-sensitive). */
function dedupKey(address: string): string {
  const at = address.lastIndexOf('@');
  return address.slice(0, at + 1) + address.slice(at + 1).toLowerCase();
}

/** Recipients one transaction may hold: fewer for untrusted, unauthenticated clients. */
function recipientLimit(s: Session): number {
  const c = s.ctx.config;
  return s.trusted || s.authUser !== undefined ? c.maxRecipients : Math.min(c.maxRecipients, c.maxRecipientsUntrusted);
}

export function rcpt(s: Session, args: string): Reply | Promise<Reply> {
  const tx = s.tx;
  if (tx === null) return R.needMail;
  const parsed = parsePathArgs(args, 'TO', false);
  if (!parsed.ok) return parsed.error === 'duplicate-param' ? reply(501, '5.5.4', 'Duplicate RCPT parameter') : R.badRecipient;
  let { address } = parsed.value;
  const { params, nonAscii } = parsed.value;
  if (params.size > 0 && !s.esmtp) return R.badParam;
  const r: RecipientInput = { address };
  for (const [key, value] of params) {
    if (key === 'NOTIFY') {
      const items = (value ?? '').toUpperCase().split(',');
      const ok = items.length > 0 && ((items.length === 1 && items[0] === 'NEVER') || items.every((i) => NOTIFY.has(i)));
      if (!ok || new Set(items).size !== items.length) return reply(501, '5.5.4', 'NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY');
      r.notify = items;
    } else if (key === 'ORCPT') {
      const semi = value?.indexOf(';') ?? -1;
      const decoded = semi > 0 ? decodeXtext(value!.slice(semi + 1)) : undefined;
      if (decoded === undefined || decoded.length === 0 || !/^[A-Za-z0-9-]+$/.test(value!.slice(0, semi))) {
        return reply(501, '5.5.4', 'ORCPT must be addr-type;xtext');
      }
      r.orcpt = `${value!.slice(0, semi).toLowerCase()};${decoded}`;
    } else {
      return R.badParam;
    }
  }
  if (nonAscii && !tx.smtputf8) return R.utf8NotDeclared;
  if (tx.recipients.length >= recipientLimit(s)) return R.tooManyRecipients;
  let local: boolean;
  const barePostmaster = address.toLowerCase() === 'postmaster';
  if (barePostmaster) {
    // §4.5.1: "Postmaster" without a domain must be accepted.
    address = r.address = `postmaster@${s.ctx.config.hostname}`;
    local = true;
  } else {
    local = s.ctx.localDomains.has(domainOf(address));
  }
  if (!s.trusted && s.authUser === undefined) {
    if (!local) {
      s.ctx.counters.recipientsRejected++;
      s.log.info({ rcpt: address }, 'relay denied');
      return R.relayDenied;
    }
    if (hasRoutingLocalPart(address)) {
      s.ctx.counters.recipientsRejected++;
      s.log.info({ rcpt: address }, 'routing local part refused');
      return R.routingLocalPart;
    }
  }
  // §4.5.1: <Postmaster> is always accepted, listed in the map or not.
  if (barePostmaster) return accept(s, r, [address]);
  const check = checkRecipient(s.ctx, address);
  return check instanceof Promise ? check.then((c) => finish(s, r, c)) : finish(s, r, check);
}

function finish(s: Session, r: RecipientInput, c: RecipientCheckResult): Reply {
  if (c.ok) return accept(s, r, c.value);
  s.ctx.counters.recipientsRejected++;
  s.log.info({ rcpt: r.address, why: c.error.why }, 'recipient refused');
  return c.error.reply;
}

function accept(s: Session, r: RecipientInput, targets: readonly string[]): Reply {
  const tx = s.tx;
  // RSET or a lost connection while an LMTP question was out: nothing to add to.
  if (tx === null) return R.needMail;
  let have = SEEN.get(tx);
  if (have === undefined) SEEN.set(tx, (have = new Set()));
  const added: RecipientInput[] = [];
  const keys: string[] = [];
  for (const t of targets) {
    const k = dedupKey(t);
    if (have.has(k) || keys.includes(k)) continue;
    keys.push(k);
    // An alias target keeps the address the client gave as its ORCPT (RFC 3461 §4.2).
    added.push(t === r.address ? r : { ...r, address: t, orcpt: r.orcpt ?? `rfc822;${r.address}` });
  }
  if (tx.recipients.length + added.length > recipientLimit(s)) return R.tooManyRecipients;
  tx.recipients.push(...added);
  for (const k of keys) have.add(k);
  s.ctx.counters.recipientsAccepted++;
  return R.recipientOk;
}
