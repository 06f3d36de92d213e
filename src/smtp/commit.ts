// The end of a message (DATA's CRLF.CRLF or BDAT LAST): prepend the Received header, make
// the one copy of the body, and hand it to the queue. The 250 is sent only once the queue's
// commit is on disk; any failure to store answers 452 4.3.1, never 250 (RFC 5321 §4.5.3.1.10,
// RFC 3463 X.3.1). Back-pressure: too many messages waiting for their commit answers 452 too.
// Authentication-Results fields that claim our authserv-id are removed from mail of clients
// outside the trusted networks (RFC 8601 §5), before any filter sees the message. So is every
// X-Postern-Pool field (docs/shaping.md): a trusted or authenticated client's names the shaping
// pool the message leaves from (a pool the node does not have refuses it, 554 5.6.0); anyone
// else's is dropped unread.
import { hasTlsRequiredNo } from '../protocol/tls-required.js';
import { R, reply, type Reply } from '../protocol/reply.js';
import { stripAuthResults } from '../protocol/strip-auth-results.js';
import { MAX_POOL_NAME_CHARS, takePoolHeader } from '../protocol/pool-header.js';
import type { EnvelopeInput } from '../queue/store.js';
import { receivedHeader } from './received.js';
import { countReceived } from '../protocol/hop-count.js';
import type { Session } from './session.js';

export interface BodySource {
  readonly size: number;
  takeBody(prefix?: Buffer): Buffer;
}

export function commitMessage(s: Session, source: BodySource): Reply | Promise<Reply> {
  const tx = s.takeTransaction();
  const ctx = s.ctx;
  if (ctx.pendingWrites >= ctx.config.maxPendingWrites) {
    source.takeBody(); // drop the views
    s.log.warn({ pending: ctx.pendingWrites }, 'queue back-pressure: message refused with 452');
    return R.queueFailed;
  }
  s.transactions++;
  let id: string;
  try {
    id = ctx.queue.reserveId();
  } catch (err) {
    source.takeBody();
    s.log.error({ err }, 'queue unavailable: 452');
    return R.queueFailed;
  }
  const received = receivedHeader({
    helo: s.helo ?? '',
    ip: s.ip,
    hostname: ctx.config.hostname,
    esmtp: s.esmtp,
    tls: s.secure ? s.tlsInfo : undefined,
    authUser: s.authUser,
    utf8: tx.smtputf8,
    id,
    recipient: tx.recipients.length === 1 ? tx.recipients[0]!.address : undefined,
  });
  let body: Buffer;
  let quarantine = false;
  let pendingFilter: Promise<Reply | null> | null = null;
  const maxHops = ctx.config.maxHops;
  let pool: string | undefined;
  // RFC 8689 §4.1: with REQUIRETLS on MAIL the TLS-Required field is ignored.
  let tlsRequiredNo = false;
  if (ctx.filters === null) {
    const taken = takePool(s, withoutForgedAuthResults(s, source.takeBody(received), received.length), received.length);
    if ('code' in taken) return taken;
    body = taken.body;
    pool = taken.pool;
    if (countReceived(body, maxHops) > maxHops) return tooManyHops(s, maxHops);
    if (!tx.requireTls) tlsRequiredNo = hasTlsRequiredNo(body);
  } else {
    if (ctx.filters.needsDrain) {
      source.takeBody();
      ctx.counters.filterTempfailed++;
      return reply(451, '4.3.2', 'System busy, try again later');
    }
    // In-line filtering: the 250 waits for the verdict (the body travels to a worker and back).
    body = Buffer.alloc(0);
    const taken = takePool(s, withoutForgedAuthResults(s, source.takeBody(), 0), 0);
    if ('code' in taken) return taken;
    const raw = taken.body;
    pool = taken.pool;
    if (!tx.requireTls) tlsRequiredNo = hasTlsRequiredNo(raw);
    if (countReceived(raw, maxHops - 1) > maxHops - 1) return tooManyHops(s, maxHops); // ours makes one more
    const envelope = {
      sender: tx.sender,
      recipients: tx.recipients.map((r) => r.address),
      client: {
        ip: s.ip,
        helo: s.helo ?? '',
        tls: s.secure,
        trusted: s.trusted,
        ...(s.authUser !== undefined ? { authUser: s.authUser } : {}),
        // What DKIM may sign for this user (POSTERN_SENDER_LOGINS).
        ...(s.authUser !== undefined && ctx.senderLogins !== null ? { senders: ctx.senderLogins.grantsOf(s.authUser) } : {}),
      },
    };
    pendingFilter = ctx.filters.filter(id, envelope, received.toString('latin1'), raw).then((out) => {
      const v = out.verdict;
      s.log.info({ id, action: v.action, score: v.score, reason: v.reason, filterMs: Math.round(out.filterMs * 100) / 100, handoffMs: Math.round((out.totalMs - out.filterMs) * 100) / 100 }, 'filtered');
      if (v.action === 'reject') {
        ctx.counters.filterRejected++;
        ctx.onEvent?.({ type: 'rejected', time: new Date().toISOString(), id, source: 'smtp', client: s.ip, sender: tx.sender, recipients: tx.recipients.length, code: 550, enhanced: '5.7.1', reply: v.reason ?? 'rejected by filter' }, { untrusted: !s.trusted && s.authUser === undefined });
        return reply(550, '5.7.1', `Message rejected${v.reason ? `: ${v.reason}` : ''}`);
      }
      if (v.action === 'tempfail') {
        ctx.counters.filterTempfailed++;
        return reply(451, '4.7.1', `Message not accepted now${v.reason ? `: ${v.reason}` : ''}, try again later`);
      }
      quarantine = v.action === 'quarantine';
      body = out.body;
      return null;
    });
  }
  const env: EnvelopeInput = {
    sender: tx.sender,
    recipients: tx.recipients,
    priority: tx.priority,
    smtputf8: tx.smtputf8,
    client: { ip: s.ip, helo: s.helo ?? '', tls: s.secure, ...(s.authUser !== undefined ? { authUser: s.authUser } : {}) },
  };
  if (tx.mtPriority !== undefined) env.mtPriority = tx.mtPriority;
  if (tx.ret !== undefined) env.ret = tx.ret;
  if (tx.envid !== undefined) env.envid = tx.envid;
  if (tx.bodyType !== undefined) env.bodyType = tx.bodyType;
  if (tx.declaredSize !== undefined) env.declaredSize = tx.declaredSize;
  if (pool !== undefined) env.pool = pool;
  if (tx.requireTls) env.tlsRequired = 'yes';
  else if (tlsRequiredNo) env.tlsRequired = 'no';
  const store = (): Promise<Reply> => {
    ctx.pendingWrites++;
    // A quarantined message is stored held: never delivered until released.
    if (quarantine) env.hold = true;
    return ctx.queue.enqueue(env, body, id).then(
      () => {
      if (quarantine) ctx.counters.filterQuarantined++;
      ctx.pendingWrites--;
      ctx.counters.messagesAccepted++;
      ctx.onQueued?.();
      ctx.onEvent?.({ type: 'received', time: new Date().toISOString(), id, source: 'smtp', sender: tx.sender, recipients: tx.recipients.length, size: body.length });
      ctx.counters.bytesAccepted += body.length;
      s.log.info({ id, from: tx.sender, rcpts: tx.recipients.length, size: body.length, priority: tx.priority, ...(pool !== undefined ? { pool } : {}) }, 'queued');
      return reply(250, '2.0.0', `Ok: queued as ${id}`);
    },
    (err: unknown) => {
      ctx.pendingWrites--;
      ctx.counters.messagesRejected++;
      s.log.error({ err, id }, 'queue write failed: 452');
      return R.queueFailed;
    },
    );
  };
  if (pendingFilter === null) return store();
  return pendingFilter.then((refusal) => refusal ?? store());
}

/** RFC 5321 §6.3: a looping message is refused, not accepted and bounced (the loop would repeat). */
function tooManyHops(s: Session, maxHops: number): Reply {
  s.ctx.counters.messagesRejected++;
  s.log.warn({ maxHops }, 'mail loop: too many Received headers, 554');
  return reply(554, '5.4.6', `Too many hops (more than ${maxHops} Received headers): mail loop`);
}

/** RFC 8601 §5: only a trusted MTA may hand us fields with our own authserv-id. */
function withoutForgedAuthResults(s: Session, msg: Buffer, from: number): Buffer {
  if (s.trusted) return msg;
  const { body, removed } = stripAuthResults(msg, from, s.ctx.config.hostname);
  if (removed > 0) s.log.info({ removed }, 'removed Authentication-Results claiming our authserv-id');
  return body;
}

/**
 * Take every X-Postern-Pool field out of the message, whoever sent it. A trusted or
 * authenticated client's names the pool (one field, a pool this node has); anything else from
 * such a client refuses the message (554 5.6.0: a typo must not silently send from the wrong
 * addresses). Another client's field is dropped and ignored.
 */
function takePool(s: Session, msg: Buffer, from: number): { body: Buffer; pool?: string } | Reply {
  const { body, removed, header } = takePoolHeader(msg, from);
  if (removed === 0) return { body };
  if (!s.trusted && s.authUser === undefined) {
    s.log.debug({ removed, pool: header.kind === 'one' ? header.value : undefined }, 'X-Postern-Pool from an untrusted client removed and ignored');
    return { body };
  }
  const refuse = (why: string): Reply => {
    s.ctx.counters.messagesRejected++;
    s.log.info({ why, pool: header.kind === 'one' || header.kind === 'bad' ? header.value : undefined }, 'X-Postern-Pool refused: 554');
    return reply(554, '5.6.0', `X-Postern-Pool ${why}`);
  };
  switch (header.kind) {
    case 'repeated':
      return refuse(`appears ${header.count} times; give it once`);
    case 'too-long':
      return refuse(`is longer than ${MAX_POOL_NAME_CHARS} characters: no pool has such a name`);
    case 'bad':
    case 'none':
      return refuse('is not a pool name (letters, digits, "_", "." and "-")');
    case 'one':
      if (s.ctx.poolExists?.(header.value) !== true) return refuse(`names no pool of this node: "${header.value}"`);
      return { body, pool: header.value };
  }
}
