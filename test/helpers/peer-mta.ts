// What the Sendmail and OpenSMTPD interop tests share: their numbered test messages (two
// recipients in one transaction, a dot-heavy body, an 8-bit body declared BODY=8BITMIME),
// postern delivering those to the peer's alice, bob and carol, the peer relaying three more into
// a postern Maildir route (far.test), and a message that needs SMTPUTF8 handed to postern by
// hand. The checks that name the peer (its trace fields, its wire) stay in each test file.
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { PosternNode } from '../../src/main.js';
import { withoutTrace } from './mail-text.js';
import { makeCert, startTestNode } from './node.js';
import { RawClient, sendMessage } from './smtp-client.js';
import { waitFor } from './wait-for.js';
import { tmpdir } from './tmpdir.js';

/** A peer MTA as these tests see it: its SMTP port and its local mailboxes. */
export interface PeerMta {
  port: number;
  /** The messages in a local mailbox, as text (latin1). */
  mailbox(local: string): string[];
}

export interface Outgoing {
  rcpts: string[];
  body: string;
  params?: string;
}

/** Builds test message n's header (LF line ends); `extra` header lines go before the blank line. */
export type MessageMaker = (n: number, to: string, extra?: string) => string;

export const EIGHT_BIT = 'Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n';

/** The text as stored: the UTF-8 bytes it was sent as, read back as latin1. */
export const asStored = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

/** Numbered messages with Subject `postern-<peer> #n` and Message-ID `<idPrefix n@post.test>`. */
export function messageMaker(peer: string, idPrefix: string): MessageMaker {
  return (n, to, extra = '') => {
    const list = to.split(', ').map((a) => `<${a}>`).join(', ');
    return `From: <sender${n}@post.test>\nTo: ${list}\nSubject: postern-${peer} #${n}\nDate: Mon, 07 Dec 2026 13:00:0${n} +0000\nMessage-ID: <${idPrefix}${n}@post.test>\nMIME-Version: 1.0\n${extra}\n`;
  };
}

/** Messages 1-3 for alice and bob, carol, and alice (8-bit) at `domain`. */
export function toPeer(msg: MessageMaker, domain: string): Outgoing[] {
  return [
    { rcpts: [`alice@${domain}`, `bob@${domain}`], body: msg(1, `alice@${domain}, bob@${domain}`) + 'Two recipients, one transaction.\n' },
    { rcpts: [`carol@${domain}`], body: msg(2, `carol@${domain}`) + '\n.\n..\n.leading dot\nend\n\n' },
    { rcpts: [`alice@${domain}`], body: msg(3, `alice@${domain}`, EIGHT_BIT) + 'Grüße — 8-bit text.\n', params: 'BODY=8BITMIME' },
  ];
}

export async function sendAll(port: number, from: string, list: Outgoing[]): Promise<void> {
  for (const m of list) await sendMessage(port, from, m.rcpts, m.body, 'client.post.test', m.params);
}

/** Whether every copy of `toPeer`'s messages is in the peer's mailboxes. */
export const allArrived = (peer: PeerMta) => (): boolean => peer.mailbox('alice').length === 2 && peer.mailbox('bob').length === 1 && peer.mailbox('carol').length === 1;

/** Each mailbox holds exactly its messages of `toPeer`'s list, byte for byte apart from trace fields. */
export function assertMailboxes(peer: PeerMta, list: Outgoing[]): void {
  const byBox = { alice: [list[0]!, list[2]!], bob: [list[0]!], carol: [list[1]!] };
  for (const [box, expected] of Object.entries(byBox)) {
    assert.deepEqual(peer.mailbox(box).map(withoutTrace).sort(), expected.map((m) => asStored(m.body)).sort(), box);
  }
}

/**
 * A postern node that routes `domain` to 127.0.0.1:`port` (plus `routeSuffix`, e.g.
 * `/tls=none`), sends it `list` and waits until the peer holds every copy.
 */
export async function deliverToPeer(t: TestContext, o: { peer: PeerMta; port: number; domain: string; routeSuffix?: string; list: Outgoing[]; what: string; diag: () => string }): Promise<PosternNode> {
  const node = await startTestNode(t, { POSTERN_DELIVERY: 'routes', POSTERN_ROUTES: `${o.domain}=smtp:127.0.0.1:${o.port}${o.routeSuffix ?? ''}`, POSTERN_HOSTNAME: 'mx.postern.interop' }, { delivery: { pollIntervalMs: 50 } });
  await sendAll(node.ports.smtpPort, 'sender@post.test', o.list);
  await waitFor(o.what, allArrived(o.peer), { timeoutMs: 20_000, diag: o.diag });
  return node;
}

export interface RelayedCopy {
  local: string;
  /** The file in postern's Maildir, CRLF line ends, as text (latin1). */
  file: string;
}

/**
 * The peer relays into postern: a postern node with STARTTLS that delivers far.test into a
 * Maildir, the peer started to relay to it, messages 4-6 sent to the peer from
 * sender@`peerDomain` (x and y in one transaction, dots, utf). Waits for the four copies and
 * postern's empty queue, checks each one's Return-Path and its bytes apart from trace fields,
 * and returns them for the checks that name the peer.
 */
export async function relayIntoMaildir<P extends PeerMta>(t: TestContext, o: { start: (relayPort: number) => Promise<P>; msg: MessageMaker; peerName: string; peerDomain: string; diag: (peer: P) => string }): Promise<{ peer: P; copies: RelayedCopy[] }> {
  const root = tmpdir(t);
  const cert = makeCert(t);
  const node = await startTestNode(t, {
    POSTERN_DELIVERY: 'routes',
    POSTERN_ROUTES: `far.test=maildir:${join(root, 'mail')}`,
    POSTERN_MAILDIR_CREATE: 'true',
    POSTERN_HOSTNAME: 'mx.postern.interop',
    POSTERN_TLS_CERT: cert.cert,
    POSTERN_TLS_KEY: cert.key,
  }, { delivery: { pollIntervalMs: 50 } });
  mkdirSync(join(root, 'mail'));
  const peer = await o.start(node.ports.smtpPort);
  const { msg } = o;
  const list = [
    { rcpts: ['x@far.test', 'y@far.test'], body: msg(4, 'x@far.test, y@far.test') + `Relayed by ${o.peerName}.\n` },
    { rcpts: ['dots@far.test'], body: msg(5, 'dots@far.test') + '.\n..\n.leading dot\nend\n' },
    { rcpts: ['utf@far.test'], body: msg(6, 'utf@far.test', EIGHT_BIT) + 'Grüße — 8-bit.\n', params: 'BODY=8BITMIME' },
  ];
  await sendAll(peer.port, `sender@${o.peerDomain}`, list);
  const box = (local: string): string[] => {
    const d = join(root, 'mail', 'far.test', local, 'new');
    return existsSync(d) ? readdirSync(d).sort().map((f) => readFileSync(join(d, f), 'latin1')) : [];
  };
  const locals = ['x', 'y', 'dots', 'utf'];
  await waitFor('the four copies in postern\'s Maildirs', () => locals.every((l) => box(l).length === 1) && node.queue.counts().total === 0, { timeoutMs: 20_000, diag: () => o.diag(peer) });
  const expected: Record<string, string> = { x: list[0]!.body, y: list[0]!.body, dots: list[1]!.body, utf: list[2]!.body };
  const returnPath = new RegExp(`^Return-Path: <sender@${o.peerDomain.replace(/\./g, '\\.')}>\\r\\n`);
  const copies = locals.map((local) => ({ local, file: box(local)[0]! }));
  for (const { local, file } of copies) {
    assert.match(file, returnPath, local);
    assert.equal(withoutTrace(file.replace(/\r\n/g, '\n')), asStored(expected[local]!), local);
  }
  return { peer, copies };
}

/**
 * Hands postern on `port` a message that needs SMTPUTF8 (so declared, UTF-8 in its Subject),
 * `data` being its header and body in LF; every reply must be a success.
 */
export async function sendNeedingSmtputf8(port: number, from: string, to: string, data: string): Promise<void> {
  const c = await RawClient.connect(port);
  try {
    await c.read();
    await c.cmd('EHLO client.test');
    assert.equal((await c.cmd(`MAIL FROM:<${from}> SMTPUTF8`)).code, 250);
    assert.equal((await c.cmd(`RCPT TO:<${to}>`)).code, 250);
    assert.equal((await c.cmd('DATA')).code, 354);
    const r = await c.cmd(`${data.replace(/\n/g, '\r\n')}.`);
    assert.equal(r.code, 250, r.text);
  } finally {
    c.end();
  }
}
