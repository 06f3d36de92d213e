// The filter pool's wire format (src/filter/messages.ts): an envelope crosses to the workers
// as one string (the round trip of any envelope is a property in test/property).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packEnvelope, unpackEnvelope, type FilterEnvelope } from '../../src/filter/messages.js';

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
