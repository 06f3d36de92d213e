// Lint rules for postern: ESLint's and typescript-eslint's recommended rules, without type
// information (the lint stays a few seconds), over src, test, bench and scripts. The rules
// turned off below are what the codebase does on purpose; each says why.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'build/', 'coverage/', 'data/', 'bench/results/', 'bench/.peers/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Scanners set their state before every exit from the loop, and `let x = fallback;
      // try { x = ... } catch {}` says what a failure leaves; the rule flags both.
      'no-useless-assignment': 'off',
      // An unused parameter named _x is part of a signature the caller fixes (a hook, a handler).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.test.ts'],
    rules: {
      // Tests read JSON replies and LMDB internals loosely; src and bench keep the rule.
      '@typescript-eslint/no-explicit-any': 'off',
      // Tests match the CLI's column output as it looks, two spaces and all.
      'no-regex-spaces': 'off',
    },
  },
  {
    // A Haraka plugin for the bench's Haraka peer: CommonJS, run inside Haraka, which defines
    // the hook return codes (OK, DENY, ...) as globals.
    files: ['bench/peers/haraka/**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { OK: 'readonly' } },
  },
);
