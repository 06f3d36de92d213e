// Does a recipient of a local domain exist, and what does it stand for? Decided at RCPT so an
// unknown or unusable mailbox is a 5xx to the client, never an accepted message that bounces
// later to a sender who is usually forged (backscatter). A domain is local here when it is in
// POSTERN_LOCAL_DOMAINS or routed to maildir, lmtp or pipe. In order: the recipient map (unknown →
// 550 5.1.1, aliases expanded), then per final address the Maildir name rules (553 5.1.3) and
// mailbox existence, and the LMTP server's own answer (POSTERN_RCPT_VERIFY=lmtp). Before all
// that, the addresses of the bounce processor: the VERP domain takes only addresses whose tag
// checks (anything else there is 550 5.1.1), a POSTERN_BOUNCE_ADDRESSES entry is accepted.
import { stat } from 'node:fs/promises';
import { domainOf } from '../protocol/address.js';
import { mailboxPath } from '../protocol/mailbox-path.js';
import { reply, type Reply } from '../protocol/reply.js';
import { matchRoute, type RouteTarget } from '../config/routes.js';
import { lookupRecipient, mapKey, type RecipientMap } from '../config/recipient-map.js';
import { decodeVerp } from '../protocol/verp.js';
import type { SessionContext } from './context.js';
import type { VerifyResult } from './lmtp-verifier.js';
import { failure, success, type Result } from '../lib/result.js';

/** Accept, the recipient replaced by the targets (itself unless an alias); or refuse with a reply, and why for the log. */
export type RecipientCheckResult = Result<readonly string[], { reply: Reply; why: string }>;

const UNKNOWN = reply(550, '5.1.1', 'Recipient address rejected: unknown user');

function refuse(r: Reply, why: string): RecipientCheckResult {
  return failure({ reply: r, why });
}

function routeOf(ctx: SessionContext, domain: string): RouteTarget | undefined {
  return matchRoute(ctx.config.routes, domain)?.target;
}

/** Is `domain` one whose mailboxes live here (so an unknown one is unknown for everyone)? */
export function isLocalDomain(ctx: SessionContext, domain: string): boolean {
  if (ctx.localDomains.has(domain)) return true;
  const k = routeOf(ctx, domain)?.kind;
  return k === 'maildir' || k === 'lmtp' || k === 'pipe';
}

export function checkRecipient(ctx: SessionContext, address: string): RecipientCheckResult | Promise<RecipientCheckResult> {
  const domain = domainOf(address);
  if (ctx.verp !== undefined && domain === ctx.verp.domain) {
    const v = decodeVerp(ctx.verp, address);
    return v.ok ? success([address]) : refuse(UNKNOWN, `not a VERP address of ours: ${v.error}`);
  }
  if (ctx.bounceAddresses?.has(mapKey(address) ?? '') === true) return success([address]);
  if (!isLocalDomain(ctx, domain)) return success([address]);
  const map: RecipientMap | undefined = ctx.recipients?.current;
  let targets: readonly string[] = [address];
  if (map !== undefined) {
    const found = lookupRecipient(map, address);
    if (found === undefined) return refuse(UNKNOWN, 'not in the recipient map');
    targets = found;
  }
  const pending: Array<Promise<RecipientCheckResult | null>> = [];
  for (const t of targets) {
    const route = routeOf(ctx, domainOf(t));
    if (route?.kind === 'maildir') {
      const mp = mailboxPath(route.root, t);
      if (!mp.ok) return refuse(reply(553, '5.1.3', `Mailbox name not allowed: ${mp.error}`), mp.error);
      // A mailbox the transport may not create exists when its folder does.
      if (ctx.mayCreateMailbox?.(t) !== true) pending.push(stat(mp.value.dir).then((st) => (st.isDirectory() ? null : refuse(UNKNOWN, 'no mailbox folder')), () => refuse(UNKNOWN, 'no mailbox folder')));
    } else if (route?.kind === 'lmtp' && ctx.verifier) {
      const v = ctx.verifier.verify(route.hosts, t);
      if (!(v instanceof Promise)) {
        const r = fromVerify(v);
        if (r !== null) return r;
      } else {
        pending.push(v.then(fromVerify));
      }
    }
  }
  if (pending.length === 0) return success(targets);
  return Promise.all(pending).then((rs) => rs.find((r) => r !== null) ?? success(targets));
}

function fromVerify(v: VerifyResult): RecipientCheckResult | null {
  if (v.kind === 'exists') return null;
  if (v.kind === 'unknown') return refuse(UNKNOWN, `LMTP server: ${v.reply.code} ${v.reply.text.slice(0, 200)}`);
  // A 4xx of the server says the mailbox is unavailable for now (450 4.1.1 keeps its meaning);
  // no answer at all is our problem with the next hop (451 4.4.1).
  return v.reply !== undefined
    ? refuse(reply(450, '4.1.1', 'Recipient address verification failed temporarily, try later'), `LMTP server: ${v.reply.code} ${v.reply.text.slice(0, 200)}`)
    : refuse(reply(451, '4.4.1', 'Recipient address verification unavailable, try later'), `LMTP verification: ${v.why}`);
}
