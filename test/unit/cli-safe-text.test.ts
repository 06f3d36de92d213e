// safeText: what `postern queue show/list` prints of text from the network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { safeText } from '../../src/cli/safe-text.js';

test('control, bidirectional and invisible format characters are escaped; tabs and ordinary text stay', () => {
  assert.equal(safeText('550 user unknown \u202Egpj.exe\u202C \u200B\u2066x\u2069 \x1b[2J\tok é 名'), '550 user unknown \\u{202e}gpj.exe\\u{202c} \\u{200b}\\u{2066}x\\u{2069} \\x1b[2J\tok é 名');
  assert.equal(safeText('ab\ufeffc\r\n'), 'ab\\u{feff}c\\x0d\\x0a');
});
