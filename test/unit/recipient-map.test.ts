// The recipient map grammar (POSTERN_RECIPIENTS): entries, catch-alls, aliases expanded at
// parse time, every error named file:line, and the checks loadResources() runs at start-up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMailboxInMap, lookupRecipient, parseRecipientMap, MAX_ALIAS_TARGETS, type RecipientMap } from '../../src/config/recipient-map.js';
import { loadConfig } from '../../src/config/load.js';
import { loadResources } from '../../src/config/resources.js';
import { writeFile } from '../helpers/node.js';
import { runCli } from '../helpers/cli.js';

function parse(text: string): RecipientMap {
  const m = parseRecipientMap(text, 'map');
  assert.ok(m.ok, m.ok ? '' : m.error);
  return m.value;
}

function errorOf(text: string): string {
  const m = parseRecipientMap(text, 'map');
  assert.ok(!m.ok, `expected an error for ${JSON.stringify(text)}`);
  return m.error;
}

const MAP = `# mailboxes
alice@local.test
Bob@Local.Test   # trailing comment
@catch.test
sales@local.test: alice@local.test, partner@remote.test
team@local.test: sales@local.test, bob@local.test
keep@local.test: keep@local.test, archive@remote.test
@all.test: alice@local.test
`;

test('recipient map: entries, +extensions, catch-alls, nested and self-listing aliases', () => {
  const m = parse(MAP);
  assert.deepEqual(lookupRecipient(m, 'alice@local.test'), ['alice@local.test']);
  assert.deepEqual(lookupRecipient(m, 'ALICE+news@LOCAL.test'), ['ALICE+news@LOCAL.test'], 'case-insensitive, extension kept');
  assert.deepEqual(lookupRecipient(m, 'bob@local.test'), ['bob@local.test']);
  assert.deepEqual(lookupRecipient(m, 'carol@local.test'), undefined);
  assert.deepEqual(lookupRecipient(m, 'anyone@catch.test'), ['anyone@catch.test']);
  assert.deepEqual(lookupRecipient(m, 'sales@local.test'), ['alice@local.test', 'partner@remote.test']);
  assert.deepEqual(lookupRecipient(m, 'team@local.test'), ['alice@local.test', 'partner@remote.test', 'bob@local.test']);
  assert.deepEqual(lookupRecipient(m, 'keep@local.test'), ['keep@local.test', 'archive@remote.test']);
  assert.deepEqual(lookupRecipient(m, '"alice"@local.test'), undefined, 'quoted local parts are never in the map');
  assert.equal(isMailboxInMap(m, 'alice+x@local.test'), true);
  assert.equal(isMailboxInMap(m, 'keep@local.test'), true);
  assert.equal(isMailboxInMap(m, 'sales@local.test'), false, 'an alias is not a mailbox');
  assert.deepEqual(lookupRecipient(m, 'whoever@ALL.test'), ['alice@local.test'], 'a catch-all alias');
  assert.equal(isMailboxInMap(m, 'x@catch.test'), false, 'a catch-all accepts, but its folders are not created');
  assert.equal(isMailboxInMap(m, 'carol@local.test'), false);
});

test('recipient map errors name file:line: syntax, duplicates, loops, unknown local targets, oversized expansions', () => {
  assert.match(errorOf('alice@local.test\nnot an address\n'), /^map:2: "not an address" is not an address/);
  assert.match(errorOf('a@x.test\nA@X.test\n'), /^map:2: "A@X\.test" is already on line 1/);
  assert.match(errorOf('@x.test\n@X.test: a@y.test\n'), /map:2: "@X\.test" is already on line 1/);
  assert.match(errorOf('@-bad-\n'), /map:1: "@-bad-" is not @domain/);
  assert.match(errorOf('a@x.test: b@x.test\nb@x.test: a@x.test\n'), /map:1: alias loop a@x\.test → b@x\.test → a@x\.test/);
  assert.match(errorOf('a@x.test: nobody@x.test\nc@x.test\n'), /map:1: alias target nobody@x\.test is not in the map/);
  assert.match(errorOf('a@x.test: "q"@y.test\n'), /map:1: alias target "\\"q\\"@y\.test" is not an address/);
  const many = Array.from({ length: MAX_ALIAS_TARGETS + 1 }, (_, i) => `u${i}@far.test`).join(', ');
  assert.match(errorOf(`list@x.test: ${many}\n`), new RegExp(`map:1: alias expands to more than ${MAX_ALIAS_TARGETS} addresses`));
  const chain = Array.from({ length: 12 }, (_, i) => `a${i}@x.test: a${i + 1}@x.test`).join('\n') + '\na12@x.test\n';
  assert.match(errorOf(chain), /nested deeper than/);
  // Every problem at once.
  assert.equal(errorOf('bad\nworse\n').split('; ').length, 2);
});

test('loadResources (start and `postern config`) refuses a broken map, naming the variable and file:line', async (t) => {
  const bad = writeFile(t, 'recipients', 'alice@local.test\nbob@local.test: alice@local.test, bob\n');
  await assert.rejects(loadResources(loadConfig({ POSTERN_RECIPIENTS: bad })), (err: Error) => {
    assert.match(err.message, /POSTERN_RECIPIENTS=".*recipients" is invalid: .*recipients:2: alias target "bob" is not an address/);
    return true;
  });
  await assert.rejects(loadResources(loadConfig({ POSTERN_RECIPIENTS: bad + '.missing' })), /POSTERN_RECIPIENTS=.* is invalid: ENOENT/);
  const good = writeFile(t, 'recipients.ok', 'alice@local.test\n');
  const r = await loadResources(loadConfig({ POSTERN_RECIPIENTS: good }));
  assert.equal(r.recipients?.mailboxes.has('alice@local.test'), true);
});

test('POSTERN_RCPT_VERIFY=lmtp needs an lmtp route', () => {
  assert.throws(() => loadConfig({ POSTERN_RCPT_VERIFY: 'lmtp' }), /POSTERN_RCPT_VERIFY=lmtp needs an lmtp route/);
  assert.equal(loadConfig({ POSTERN_RCPT_VERIFY: 'lmtp', POSTERN_ROUTES: 'x.test=lmtp:127.0.0.1:24' }).rcptVerify, 'lmtp');
  assert.equal(loadConfig({}).maxRecipientsUntrusted, 100);
  assert.equal(loadConfig({}).maildirCreate, false);
});

test('`postern config` exits 78 on a broken recipient map, naming file:line', async (t) => {
  const bad = writeFile(t, 'recipients', 'alice@local.test\nalice@local.test\n');
  const r = await runCli(['config'], { POSTERN_RECIPIENTS: bad });
  assert.equal(r.code, 78);
  assert.match(r.stderr, /POSTERN_RECIPIENTS=.* is invalid: .*recipients:2: "alice@local\.test" is already on line 1/);
});
