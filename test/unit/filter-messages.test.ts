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

test('packEnvelope: SMTP-shaped envelopes travel as lines, one with a line break as JSON', () => {
  const e: FilterEnvelope = { sender: 'a@example.com', recipients: ['b@example.com', 'c@example.com'], client: { ip: '192.0.2.1', helo: 'c.example', tls: true, trusted: false } };
  assert.equal(packEnvelope(e), '100\n192.0.2.1\nc.example\n\na@example.com\nb@example.com\nc@example.com');
  const odd = { ...e, client: { ...e.client, authUser: 'x\ny' } };
  assert.ok(packEnvelope(odd).startsWith('J{'));
  assert.deepEqual(unpackEnvelope(packEnvelope(odd)), odd);
  const granted: FilterEnvelope = { ...e, client: { ...e.client, authUser: 'alice', senders: ['alice@example.com', '@example.org'] } };
  assert.equal(packEnvelope(granted), '102\n192.0.2.1\nc.example\nalice\nalice@example.com @example.org\na@example.com\nb@example.com\nc@example.com');
  assert.deepEqual(unpackEnvelope(packEnvelope(granted)), granted);
  const none: FilterEnvelope = { ...granted, client: { ...granted.client, senders: [] } };
  assert.deepEqual(unpackEnvelope(packEnvelope(none)), none);
});
