// Bounce classification: every delivery failure (a reply of the next hop, a local failure, or
// the status of an asynchronous DSN) gets one category from the enhanced status code (RFC 3463),
// the reply code, the command that failed and the provider's text, by an ordered rule list.
// The rules are data: config/bounce-rules.json ships with postern, POSTERN_BOUNCE_RULES adds
// an operator's file in front of them (or replaces them). No I/O here: the caller reads files.
//
//   rule = { category, code?, enhanced?, command?, text? }   every condition given must hold;
//   the first rule that holds names the category; none → "other".
import { failure, success, type Result } from './result.js';

export const BOUNCE_CATEGORIES = [
  'invalid-recipient',
  'mailbox-full',
  'message-too-large',
  'spam-content',
  'reputation',
  'authentication',
  'rate-limit',
  'dns',
  'tls',
  'connection',
  'policy',
  'other',
] as const;

export type BounceCategory = (typeof BOUNCE_CATEGORIES)[number];

/** What is classified: the fields of a ReplyRecord that say why a delivery failed. */
export interface FailureReply {
  code?: number | undefined;
  enhanced?: string | undefined;
  command?: string | undefined;
  text: string;
}

export interface BounceRule {
  readonly name?: string;
  readonly category: BounceCategory;
  /** Reply code patterns: "550", "5xx", "55x". */
  readonly code?: readonly string[];
  /** Enhanced code patterns: "5.1.1", "*.2.2", "5.7.*". */
  readonly enhanced?: readonly string[];
  /** Command names (upper case): CONNECT, STARTTLS, RCPT, ROUTE, … */
  readonly command?: readonly string[];
  /** Case-insensitive regular expressions; any one matching the text is enough. */
  readonly text?: readonly RegExp[];
}

export interface BounceRules {
  readonly rules: readonly BounceRule[];
}

/** Only this much of a reply's text is matched: bounds the regex work per failure. */
export const MAX_CLASSIFIED_TEXT = 2000;
/** An operator's file with more rules than this is a mistake. */
export const MAX_RULES = 2000;

const CODE_PATTERN = /^[2-5][0-9x]{2}$/;
const ENHANCED_PATTERN = /^([245]|\*)\.(\d{1,3}|\*)\.(\d{1,3}|\*)$/;

function matchCode(patterns: readonly string[], code: number | undefined): boolean {
  if (code === undefined) return false;
  const c = String(code);
  return patterns.some((p) => p.length === 3 && [...p].every((ch, i) => ch === 'x' || ch === c[i]));
}

function matchEnhanced(patterns: readonly string[], enhanced: string | undefined): boolean {
  if (enhanced === undefined) return false;
  const parts = enhanced.split('.');
  if (parts.length !== 3) return false;
  // "5.01.1" and "5.1.1" are the same code.
  const norm = parts.map((p) => (/^\d+$/.test(p) ? String(Number(p)) : p));
  return patterns.some((p) => p.split('.').every((q, i) => q === '*' || q === norm[i]));
}

/** The category of one failure: the first rule whose every condition holds, else "other". */
export function classifyFailure(rules: BounceRules, r: FailureReply): BounceCategory {
  const text = r.text.length > MAX_CLASSIFIED_TEXT ? r.text.slice(0, MAX_CLASSIFIED_TEXT) : r.text;
  const command = r.command?.toUpperCase();
  for (const rule of rules.rules) {
    if (rule.code && !matchCode(rule.code, r.code)) continue;
    if (rule.enhanced && !matchEnhanced(rule.enhanced, r.enhanced)) continue;
    if (rule.command && (command === undefined || !rule.command.includes(command))) continue;
    if (rule.text && !rule.text.some((re) => re.test(text))) continue;
    return rule.category;
  }
  return 'other';
}

/** "550 5.1.1 text" or "smtp; 550-5.1.1 text" (a DSN Diagnostic-Code) split into its fields. */
export function splitDiagnostic(diagnostic: string): FailureReply {
  let s = diagnostic.trim();
  const semi = /^[A-Za-z0-9-]+\s*;\s*/.exec(s);
  if (semi) s = s.slice(semi[0].length);
  const m = /^([2-5]\d\d)(?:[ -]+(?:([245]\.\d{1,3}\.\d{1,3})(?=\s|$)\s*)?)?/.exec(s);
  if (!m) return { text: s };
  const out: FailureReply = { code: Number(m[1]), text: s.slice(m[0].length) };
  if (m[2] !== undefined) out.enhanced = m[2];
  return out;
}

function strings(v: unknown): string[] | null {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string')) return v as string[];
  return null;
}

/**
 * Parse a rule file's text: `{ "replace"?: bool, "rules": [rule…] }`. `source` names the file
 * in errors. Every bad rule is reported ("source: rule 3 (name): …"), at most 20.
 */
export function parseBounceRules(text: string, source: string): Result<{ replace: boolean; rules: BounceRules }, string> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    return failure(`${source}: not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return failure(`${source}: expected an object { "rules": [...] }`);
  const o = doc as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['rules', 'replace', 'comment', '$comment'].includes(k)) return failure(`${source}: unknown key "${k}" (expected rules, replace)`);
  if (o.replace !== undefined && typeof o.replace !== 'boolean') return failure(`${source}: "replace" must be true or false`);
  if (!Array.isArray(o.rules)) return failure(`${source}: "rules" must be an array`);
  if (o.rules.length > MAX_RULES) return failure(`${source}: ${o.rules.length} rules, at most ${MAX_RULES}`);
  const problems: string[] = [];
  const rules: BounceRule[] = [];
  o.rules.forEach((raw: unknown, i) => {
    const where = `${source}: rule ${i + 1}`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return void problems.push(`${where}: not an object`);
    const r = raw as Record<string, unknown>;
    const at = typeof r.name === 'string' ? `${where} (${r.name})` : where;
    for (const k of Object.keys(r)) if (!['name', 'category', 'code', 'enhanced', 'command', 'text', 'comment'].includes(k)) return void problems.push(`${at}: unknown key "${k}"`);
    if (!BOUNCE_CATEGORIES.includes(r.category as BounceCategory)) return void problems.push(`${at}: category ${JSON.stringify(r.category)} is not one of ${BOUNCE_CATEGORIES.join(', ')}`);
    const rule: { -readonly [K in keyof BounceRule]: BounceRule[K] } = { category: r.category as BounceCategory };
    if (typeof r.name === 'string') rule.name = r.name;
    if (r.code !== undefined) {
      const c = strings(Array.isArray(r.code) ? r.code.map((x) => (typeof x === 'number' ? String(x) : x)) : typeof r.code === 'number' ? String(r.code) : r.code);
      if (c === null || !c.every((x) => CODE_PATTERN.test(x))) return void problems.push(`${at}: "code" must be reply codes or patterns like 550, "5xx", "55x"`);
      rule.code = c;
    }
    if (r.enhanced !== undefined) {
      const e = strings(r.enhanced);
      if (e === null || !e.every((x) => ENHANCED_PATTERN.test(x))) return void problems.push(`${at}: "enhanced" must be enhanced codes or patterns like "5.1.1", "*.2.2", "5.7.*"`);
      rule.enhanced = e.map((x) => x.split('.').map((p) => (p === '*' ? p : String(Number(p)))).join('.'));
    }
    if (r.command !== undefined) {
      const c = strings(r.command);
      if (c === null || !c.every((x) => /^[A-Za-z-]{1,20}$/.test(x))) return void problems.push(`${at}: "command" must be command names like "RCPT", "STARTTLS"`);
      rule.command = c.map((x) => x.toUpperCase());
    }
    if (r.text !== undefined) {
      const t = strings(r.text);
      if (t === null) return void problems.push(`${at}: "text" must be a regular expression or a list of them`);
      const res: RegExp[] = [];
      for (const src of t) {
        try {
          res.push(new RegExp(src, 'i'));
        } catch (err) {
          return void problems.push(`${at}: text ${JSON.stringify(src)} is not a regular expression: ${(err as Error).message}`);
        }
      }
      rule.text = res;
    }
    if (rule.code === undefined && rule.enhanced === undefined && rule.command === undefined && rule.text === undefined) return void problems.push(`${at}: has no condition (code, enhanced, command or text)`);
    rules.push(Object.freeze(rule));
  });
  if (problems.length > 0) return failure(problems.slice(0, 20).join('; ') + (problems.length > 20 ? `; and ${problems.length - 20} more` : ''));
  return success({ replace: o.replace === true, rules: Object.freeze({ rules: Object.freeze(rules) }) });
}

/** The operator's rules in front of the shipped ones (or instead of them with "replace"). */
export function combineBounceRules(shipped: BounceRules, override: { replace: boolean; rules: BounceRules } | null): BounceRules {
  if (override === null) return shipped;
  return Object.freeze({ rules: Object.freeze(override.replace ? [...override.rules.rules] : [...override.rules.rules, ...shipped.rules]) });
}
