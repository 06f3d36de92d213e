// The filter pool's wire format (src/filter/messages.ts): an envelope crosses to the workers
// as one string and must come back exactly as it was, whatever its fields hold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { packEnvelope, unpackEnvelope, type FilterEnvelope } from '../../src/filter/messages.js';

const text = fc.string({ unit: 'binary', maxLength: 40 });
const envelope: fc.Arbitrary<FilterEnvelope> = fc.record({
  sender: text,
  recipients: fc.array(text, { maxLength: 5 }),
  client: fc.record(
    { ip: text, helo: text, tls: fc.boolean(), trusted: fc.boolean(), authUser: text, senders: fc.array(text, { maxLength: 4 }) },
    { requiredKeys: ['ip', 'helo', 'tls', 'trusted'] },
  ),
});

test('packEnvelope / unpackEnvelope: any envelope round-trips exactly (line breaks, empty fields, no authUser, sender grants with or without one)', () => {
  // (fast-check builds null-prototype records; compare with plain objects)
  fc.assert(fc.property(envelope, (e) => assert.deepEqual(unpackEnvelope(packEnvelope(e)), { ...e, recipients: [...e.recipients], client: { ...e.client } })), { numRuns: 2000 });
});
