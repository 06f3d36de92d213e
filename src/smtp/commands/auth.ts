// AUTH PLAIN and LOGIN (RFC 4954, RFC 4616; LOGIN as deployed). Offered only over TLS unless
// POSTERN_REQUIRE_TLS_FOR_AUTH=false. Each attempt is first admitted by the failure back-off
// (auth/auth-penalty.ts: a delay after failures, 454 4.7.0 past the threshold, per client and
// per user name), then checked in the password checker's own threads (auth/password-checker.ts;
// 454 4.7.0 when its queue is full). A failure costs a further fixed delay and a session error.
import { setTimeout as sleep } from 'node:timers/promises';
import { R, reply, type Reply } from '../../protocol/reply.js';
import { clientKey } from '../../lib/networks.js';
import type { Session } from '../session.js';

export interface AuthFlow {
  mech: 'PLAIN' | 'LOGIN';
  username?: string;
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const FAIL_DELAY_MS = 250;

function decode(s: string): string | undefined {
  if (!B64.test(s)) return undefined;
  return Buffer.from(s, 'base64').toString('utf8');
}

const USERNAME_PROMPT = reply(334, '', 'VXNlcm5hbWU6');
const PASSWORD_PROMPT = reply(334, '', 'UGFzc3dvcmQ6');
const EMPTY_PROMPT = reply(334, '', '');

export function auth(s: Session, args: string): Reply | Promise<Reply> {
  if (s.ctx.users === null) return R.notImplemented;
  if (s.authUser !== undefined) return R.alreadyAuth;
  if (s.helo === null || !s.esmtp) return R.needHelo;
  if (s.tx !== null) return R.authInTransaction;
  if (!s.secure && s.ctx.config.requireTlsForAuth) return R.encryptionRequired;
  const sp = args.indexOf(' ');
  const mech = (sp < 0 ? args : args.slice(0, sp)).toUpperCase();
  const initial = sp < 0 ? undefined : args.slice(sp + 1).trim();
  if (mech !== 'PLAIN' && mech !== 'LOGIN') return R.unknownMechanism;
  s.auth = { mech };
  s.mode = 'auth';
  if (initial === undefined) return mech === 'PLAIN' ? EMPTY_PROMPT : USERNAME_PROMPT;
  return step(s, initial === '=' ? '' : initial);
}

/** A line received while an AUTH exchange is in progress. */
export function authContinue(s: Session, line: Buffer): Reply | Promise<Reply> {
  return step(s, line.toString('latin1').trim());
}

function finish(s: Session): void {
  s.auth = null;
  s.mode = 'command';
}

function step(s: Session, response: string): Reply | Promise<Reply> {
  const flow = s.auth!;
  if (response === '*') {
    finish(s);
    return R.authCancelled;
  }
  const text = decode(response);
  if (text === undefined) {
    finish(s);
    return R.authBadBase64;
  }
  if (flow.mech === 'LOGIN') {
    if (flow.username === undefined) {
      flow.username = text;
      return PASSWORD_PROMPT;
    }
    finish(s);
    return check(s, flow.username, text);
  }
  finish(s);
  // PLAIN: authzid NUL authcid NUL passwd (RFC 4616 §2); no proxy authorization.
  const parts = text.split('\0');
  if (parts.length !== 3 || (parts[0] !== '' && parts[0] !== parts[1])) return R.authFailed;
  return check(s, parts[1]!, parts[2]!);
}

/** RFC 4954 §6: a temporary failure of the authentication mechanism. */
const AUTH_LOCKED = reply(454, '4.7.0', 'Too many authentication failures, try again later');
const AUTH_BUSY = reply(454, '4.7.0', 'Temporary authentication failure, try again later');
/** User names longer than this cannot exist (users.ts); their count shares one key per prefix. */
const MAX_NAME = 256;

async function check(s: Session, user: string, password: string): Promise<Reply> {
  const ctx = s.ctx;
  const client = clientKey(s.ip, ctx.config.ipv6Prefix);
  // The other nodes' failures of this client (one Redis round trip within its deadline; 0 without a cluster).
  const elsewhere = await ctx.authPenalty.clusterFailures(client, s.trusted);
  const admission = ctx.authPenalty.begin(client, user.slice(0, MAX_NAME + 1), s.trusted, elsewhere);
  if (admission.refused) {
    ctx.counters.authFailures++;
    s.log.warn({ user }, 'authentication refused: too many failures');
    return AUTH_LOCKED;
  }
  let outcome: 'ok' | 'bad' | 'void' = 'void';
  try {
    if (admission.delayMs > 0) await sleep(admission.delayMs);
    if (s.closed) return AUTH_BUSY; // nobody to answer: check nothing
    const users = ctx.users!;
    let result: 'ok' | 'bad' | 'busy';
    try {
      // An empty name is checked too, against no user: the same work as any wrong name.
      result = await ctx.passwords!.verify(password, users.hashOf(user), () => s.closed);
    } catch (err) {
      s.log.error({ err }, 'password check failed');
      return AUTH_BUSY;
    }
    if (result === 'busy') {
      if (!s.closed) s.log.warn('authentication deferred: password checks queue full');
      return AUTH_BUSY;
    }
    outcome = result === 'ok' && user.length > 0 ? 'ok' : 'bad';
  } finally {
    admission.settle(outcome);
  }
  if (outcome === 'ok') {
    s.authUser = user;
    s.log.info({ user }, 'authenticated');
    return R.authOk;
  }
  ctx.counters.authFailures++;
  s.log.warn({ user }, 'authentication failed');
  await sleep(FAIL_DELAY_MS);
  return R.authFailed;
}
