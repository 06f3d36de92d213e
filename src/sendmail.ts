#!/usr/bin/env node
// The `postern-sendmail` bin: `postern sendmail` under a name an operator can link as
// /usr/sbin/sendmail (and as mailq, which lists the queue as `sendmail -bp` does). Only the
// sendmail modules load: cron and PHP start it once per message.
import { basename } from 'node:path';
import { PosternError } from './errors.js';
import { exitCodeOf } from './cli/exit-codes.js';
import { sendmailCommand } from './cli/sendmail.js';

const argv = process.argv.slice(2);
if (basename(process.argv[1] ?? '') === 'mailq') argv.unshift('-bp');

sendmailCommand(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof PosternError ? `postern-sendmail: ${err.message}` : err);
    process.exit(exitCodeOf(err));
  },
);
