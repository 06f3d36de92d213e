// The sendmail command line, as Sendmail and Postfix's sendmail(1) read it. Its own parser,
// not node:util parseArgs: sendmail's options are single-dash letters read by getopt(3), where
// a letter that takes a value takes the rest of the word (`-fADDR`, `-oi` is -o with "i",
// `-bs` is -b with "s", `-FCronDaemon`) or else the next word (`-f ADDR`), and flag letters
// group (`-ti`). parseArgs reads `-oi` as -o -i and `-fADDR` only for declared short options
// and would turn away the options callers pass by habit. As getopt, the first word that is
// not an option (or `--`) ends the options: the rest are recipients.

export const SENDMAIL_USAGE = `usage: postern sendmail [options] [recipient ...] < message
       postern-sendmail [options] [recipient ...] < message   (link it as /usr/sbin/sendmail)

  Submit the message on stdin to the local node over SMTP (POSTERN_SMTP_HOST, POSTERN_SMTP_PORT;
  a wildcard address is reached on loopback). Missing From, Date and Message-ID are added;
  a recipient without @ gets @POSTERN_HOSTNAME. Output is silent on success.

  -t              recipients from the To, Cc and Bcc headers too; Bcc is removed
  -i, -oi         a line of a single "." does not end the message (read to end of input)
  -f ADDR, -r ADDR  the envelope sender (default: the user @POSTERN_HOSTNAME; <> for none)
  -F NAME         the full name for an added From header
  -B 7BIT|8BITMIME  the body type (8-bit content is sent as 8BITMIME anyway)
  -N never|success,failure,delay   DSN notifications (RCPT NOTIFY)
  -R full|hdrs    DSN return (MAIL RET);  -V ENVID  DSN envelope id
  -bm             submit the message (the default);  -bs  speak SMTP on stdin/stdout
  -bp             list the queue (as mailq)
  -C FILE         read POSTERN_* settings from FILE (KEY=VALUE lines); without it, the
                  environment, then /etc/postern/postern.env when it exists
  -v              show the SMTP dialogue on stderr
  --help          this text
  accepted and ignored: -oem -oep -oeq -oew -oee -odb -odi -odq -om -n -m -U -G -h N -L LABEL -O OPT=VAL

exit (sysexits): 0 queued for every recipient; 64 usage; 65 the message was refused
(or no recipients with -t); 67 a recipient was refused for good; 75 the node is down or
answered "try later" (nothing was queued: retry); 78 configuration. On any failure nothing
is queued: the message went to every recipient or to none.`;

export interface SendmailArgs {
  mode: 'submit' | 'smtp' | 'list';
  /** -t */
  extract: boolean;
  /** -i / -oi */
  ignoreDots: boolean;
  /** -f / -r: undefined = the default sender; '' = the null sender. */
  sender?: string;
  /** -F */
  fullName?: string;
  /** -B */
  bodyType?: '7BIT' | '8BITMIME';
  /** -N, as RCPT NOTIFY= takes it (upper case, comma-separated) */
  notify?: string;
  /** -R */
  ret?: 'FULL' | 'HDRS';
  /** -V */
  envid?: string;
  /** -C */
  envFile?: string;
  verbose: boolean;
  help: boolean;
  recipients: string[];
}

export type SendmailArgsResult = { ok: true; args: SendmailArgs } | { ok: false; error: string };

/** Letters that take a value: attached (`-fADDR`) or the next word. */
const WITH_VALUE = new Set(['f', 'r', 'F', 'B', 'N', 'R', 'V', 'C', 'b', 'o', 'h', 'L', 'O']);
/** Letters without a value. */
const FLAGS = new Set(['t', 'i', 'v', 'n', 'm', 'U', 'G']);
/** -o options that change nothing here: error reporting (-oe?) and delivery modes (-od?), the node queues. */
const IGNORED_O = /^(e[mpqwe]|d[bidq]|m)$/;

const NOTIFY = /^(never|(success|failure|delay)(,(success|failure|delay))*)$/i;
// An RFC 3461 ENVID is xtext-encoded on the wire; keep it printable ASCII and short.
const ENVID = /^[\x21-\x7e]{1,100}$/;

export function parseSendmailArgs(argv: readonly string[]): SendmailArgsResult {
  const a: SendmailArgs = { mode: 'submit', extract: false, ignoreDots: false, verbose: false, help: false, recipients: [] };
  let i = 0;
  const fail = (error: string): SendmailArgsResult => ({ ok: false, error });
  for (; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') {
      i++;
      break;
    }
    if (word === '--help') {
      a.help = true;
      continue;
    }
    if (!word.startsWith('-') || word === '-') break;
    if (word.startsWith('--')) return fail(`unknown option ${word}`);
    for (let k = 1; k < word.length; k++) {
      const letter = word[k]!;
      if (FLAGS.has(letter)) {
        if (letter === 't') a.extract = true;
        else if (letter === 'i') a.ignoreDots = true;
        else if (letter === 'v') a.verbose = true;
        continue;
      }
      if (!WITH_VALUE.has(letter)) return fail(`unknown option -${letter}`);
      let value = word.slice(k + 1);
      if (value === '') {
        if (i + 1 >= argv.length) return fail(`option -${letter} needs a value`);
        value = argv[++i]!;
      }
      const e = applyValue(a, letter, value);
      if (e !== null) return fail(e);
      break; // the value took the rest of the word
    }
  }
  a.recipients = argv.slice(i);
  return { ok: true, args: a };
}

function applyValue(a: SendmailArgs, letter: string, value: string): string | null {
  switch (letter) {
    case 'f':
    case 'r': {
      const s = value.replace(/^<(.*)>$/, '$1');
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x20<>\x7f]/.test(s)) return `-${letter} ${JSON.stringify(value)} is not an address`;
      a.sender = s;
      return null;
    }
    case 'F':
      // eslint-disable-next-line no-control-regex
      if (/[\x00-\x1f\x7f]/.test(value)) return '-F: control characters are not allowed in the name';
      a.fullName = value;
      return null;
    case 'B': {
      const b = value.toUpperCase();
      if (b !== '7BIT' && b !== '8BITMIME') return `-B ${value}: 7BIT or 8BITMIME`;
      a.bodyType = b;
      return null;
    }
    case 'N':
      if (!NOTIFY.test(value)) return `-N ${value}: never, or one or more of success,failure,delay`;
      a.notify = value.toUpperCase();
      return null;
    case 'R': {
      const r = value.toUpperCase();
      if (r !== 'FULL' && r !== 'HDRS') return `-R ${value}: full or hdrs`;
      a.ret = r;
      return null;
    }
    case 'V':
      if (!ENVID.test(value)) return `-V: an envelope id of 1-100 printable ASCII characters`;
      a.envid = value;
      return null;
    case 'C':
      a.envFile = value;
      return null;
    case 'b':
      if (value === 'm') a.mode = 'submit';
      else if (value === 's') a.mode = 'smtp';
      else if (value === 'p') a.mode = 'list';
      else return `-b${value} is not supported (only -bm, -bs and -bp)`;
      return null;
    case 'o':
      if (value === 'i') a.ignoreDots = true;
      else if (!IGNORED_O.test(value)) return `-o${value} is not supported (only -oi, -oe*, -od*, -om)`;
      return null;
    default:
      // -h hops, -L label, -O option=value: accepted, nothing to do here.
      return null;
  }
}
