// Two wrappers around a transport, built by engine.ts only when configured:
//
// VerpTransport (POSTERN_VERP): the envelope sender of each outbound SMTP transaction becomes
// the recipient's VERP address (protocol/verp.ts), so one transaction per recipient: the
// scheduler's group of recipients for a destination is split here and the parts delivered at
// once (the destination pool bounds the connections). The stored record keeps the real sender:
// our own DSNs still go to it. A null sender (a bounce) stays null, and a recipient whose VERP
// address would be too long keeps the real sender (it is matched by Message-ID only).
//
// BounceAddressTransport (POSTERN_BOUNCE_ADDRESSES): recipients that are bounce addresses go to
// the bounce processor instead of their domain's route; the others go on as routed.
import type { VerpKey } from '../protocol/verp.js';
import { encodeVerp } from '../protocol/verp.js';
import type { DeliveryRequest, Destination, RecipientResult, Transport } from './types.js';

export class VerpTransport implements Transport {
  readonly #inner: Transport;
  readonly #verp: VerpKey;
  /** Transactions sent without a VERP sender because the address would be too long. */
  skipped = 0;

  constructor(inner: Transport, verp: VerpKey) {
    this.#inner = inner;
    this.#verp = verp;
  }

  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    // LMTP is the last hop into a local store: nothing comes back to a return path there.
    if (dest.kind !== 'smtp' || req.message.sender === '') return this.#inner.deliver(dest, req);
    const plain: DeliveryRequest['recipients'] = [];
    const parts: Array<Promise<RecipientResult[]>> = [];
    for (const r of req.recipients) {
      const sender = encodeVerp(this.#verp, req.message.id, r.address);
      if (sender === null) {
        this.skipped++;
        plain.push(r);
        continue;
      }
      parts.push(this.#inner.deliver(dest, { ...req, message: { ...req.message, sender }, recipients: [r] }));
    }
    if (plain.length > 0) parts.push(this.#inner.deliver(dest, { ...req, recipients: plain }));
    return (await Promise.all(parts)).flat();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

export class BounceAddressTransport implements Transport {
  readonly #inner: Transport;
  readonly #processor: Transport;
  readonly #isBounceAddress: (address: string) => boolean;

  constructor(inner: Transport, processor: Transport, isBounceAddress: (address: string) => boolean) {
    this.#inner = inner;
    this.#processor = processor;
    this.#isBounceAddress = isBounceAddress;
  }

  async deliver(dest: Destination, req: DeliveryRequest): Promise<RecipientResult[]> {
    const reports = req.recipients.filter((r) => this.#isBounceAddress(r.address));
    if (reports.length === 0) return this.#inner.deliver(dest, req);
    const others = req.recipients.filter((r) => !this.#isBounceAddress(r.address));
    const parts = [this.#processor.deliver({ kind: 'bounces', key: 'bounces' }, { ...req, recipients: reports })];
    if (others.length > 0) parts.push(this.#inner.deliver(dest, { ...req, recipients: others }));
    return (await Promise.all(parts)).flat();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
