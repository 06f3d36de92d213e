#!/usr/bin/env node
// Standalone entry: `node dist/filter/spam/bin.js train|classify|eval ...`, the same as
// `postern spam ...` (both go through spamCommand).
import { spamCommand } from './cli.js';

process.exitCode = await spamCommand(process.argv.slice(2));
