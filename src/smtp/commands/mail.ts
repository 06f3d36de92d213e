// MAIL FROM (RFC 5321 §4.1.1.2) with SIZE (RFC 1870), 8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531),
// DSN RET/ENVID (RFC 3461 §4.3–4.4), AUTH= (RFC 4954 §5) and MT-PRIORITY (RFC 6710, onto the
// queue's three priorities). With a sender login map, an authenticated client may use only its
// user's addresses (553 5.7.1, as Postfix's reject_sender_login_mismatch); <> stays allowed
// (RFC 8098 read receipts). REQUIRETLS (RFC 8689) over TLS only.
import { decodeXtext, parsePathArgs } from '../../protocol/address.js';
import { R, reply, type Reply } from '../../protocol/reply.js';
import { PRIORITY, type Priority } from '../../queue/store.js';
import { newTransaction } from '../transaction.js';
import type { Session } from '../session.js';

/** RFC 6710 levels -9..9 onto urgent / normal / bulk. */
export function priorityOf(mtPriority: number | undefined): Priority {
  if (mtPriority === undefined || mtPriority === 0) return PRIORITY.normal;
  return mtPriority > 0 ? PRIORITY.urgent : PRIORITY.bulk;
}

export function mail(s: Session, args: string): Reply {
  if (s.helo === null) return R.needHelo;
  if (s.tx !== null) return R.nestedMail;
  const parsed = parsePathArgs(args, 'FROM', true);
  if (!parsed.ok) return parsed.error === 'duplicate-param' ? reply(501, '5.5.4', 'Duplicate MAIL parameter') : R.badSender;
  const { address, params, nonAscii } = parsed.value;
  if (params.size > 0 && !s.esmtp) return R.badParam;
  const tx = newTransaction(address);
  for (const [key, value] of params) {
    switch (key) {
      case 'SIZE': {
        if (value === undefined || !/^\d{1,20}$/.test(value)) return reply(501, '5.5.4', 'Bad SIZE parameter');
        const n = Number(value);
        if (n > s.ctx.config.maxMessageBytes) return R.sizeExceeded;
        tx.declaredSize = n;
        break;
      }
      case 'BODY': {
        const v = value?.toUpperCase();
        if (v !== '7BIT' && v !== '8BITMIME') return reply(555, '5.5.4', 'BODY must be 7BIT or 8BITMIME');
        tx.bodyType = v;
        break;
      }
      case 'SMTPUTF8':
        if (value !== undefined) return reply(555, '5.5.4', 'SMTPUTF8 takes no value');
        tx.smtputf8 = true;
        break;
      case 'RET': {
        const v = value?.toUpperCase();
        if (v !== 'FULL' && v !== 'HDRS') return reply(501, '5.5.4', 'RET must be FULL or HDRS');
        // Backscatter: a bounce to a forged sender must not carry the whole message back, so
        // untrusted, unauthenticated clients get headers only (RFC 3461 §4.3 lets us return less).
        tx.ret = v === 'FULL' && !s.trusted && s.authUser === undefined ? 'HDRS' : v;
        break;
      }
      case 'ENVID': {
        const v = value === undefined ? undefined : decodeXtext(value);
        if (v === undefined || v.length === 0 || v.length > 100) return reply(501, '5.5.4', 'Bad ENVID (xtext, at most 100 characters)');
        tx.envid = v;
        break;
      }
      case 'REQUIRETLS':
        // RFC 8689 §4.1: only on a TLS session (where it is offered); it takes no value.
        if (!s.secure) return reply(555, '5.5.4', 'REQUIRETLS is only accepted over TLS');
        if (value !== undefined) return reply(555, '5.5.4', 'REQUIRETLS takes no value');
        tx.requireTls = true;
        break;
      case 'AUTH':
        // RFC 4954 §5: the authenticated identity of the original submitter; we record our own.
        if (value === undefined || (value !== '<>' && decodeXtext(value) === undefined)) return reply(501, '5.5.4', 'Bad AUTH parameter');
        break;
      case 'MT-PRIORITY': {
        if (value === undefined || !/^[+-]?\d$/.test(value)) return reply(501, '5.5.4', 'MT-PRIORITY must be an integer from -9 to 9');
        let p = Number(value);
        // RFC 6710 §5.1: an MTA may lower the priority of an unauthorised client.
        if (p > 0 && !s.trusted && s.authUser === undefined && !s.ctx.config.mtPriorityUntrusted) p = 0;
        tx.mtPriority = p;
        tx.priority = priorityOf(p);
        break;
      }
      default:
        return R.badParam;
    }
  }
  if (nonAscii && !tx.smtputf8) return R.utf8NotDeclared;
  const logins = s.ctx.senderLogins;
  if (logins !== null && s.authUser !== undefined && address !== '' && !logins.mayUse(s.authUser, address)) {
    s.log.warn({ user: s.authUser, from: address }, 'sender address not owned by the authenticated user');
    return reply(553, '5.7.1', `Sender address not owned by user ${s.authUser}`);
  }
  s.tx = tx;
  return R.senderOk;
}
