// Route matching (src/config/routes.ts) as a property: on random tables, matchRoute picks what
// a naive reference picks (exact, then the longest "*.suffix", then "*").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseRoutes, matchRoute, type RouteTable } from '../../src/config/routes.js';

function table(spec: string): RouteTable {
  const t = parseRoutes(spec);
  if (!t.ok) assert.fail(t.error);
  return t.value;
}

test('matching agrees with a naive reference on random tables (property)', () => {
  const label = fc.constantFrom('a', 'b', 'c');
  const name = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
  const pattern = fc.oneof(name, name.map((n) => `*.${n}`), fc.constant('*'));
  fc.assert(
    fc.property(fc.uniqueArray(pattern, { maxLength: 8 }), name, (patterns, domain) => {
      const t = table(patterns.map((p, i) => `${p}=smtp:h${i}`).join(';'));
      const matches = patterns.filter((p) => p === domain || p === '*' || (p.startsWith('*.') && domain.endsWith(p.slice(1))));
      // Exact beats any wildcard, a longer wildcard beats a shorter one, "*" comes last.
      const rank = (p: string): number => (p === domain ? 1e6 : p === '*' ? -1 : p.length);
      const want = matches.sort((x, y) => rank(y) - rank(x))[0];
      assert.equal(matchRoute(t, domain)?.pattern, want);
    }),
  );
});
