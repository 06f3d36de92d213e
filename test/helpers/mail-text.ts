// Reading back what a real mail server stored or sent, for the interop tests: a message
// without the trace fields receivers prepend, and an RFC 3464 delivery status notification
// read by an independent MIME parser (postal-mime) into its field groups.
import assert from 'node:assert/strict';
import PostalMime from 'postal-mime';

/** A message without the trace fields receivers prepend (Return-Path, Received, Delivered-To, …). */
export function withoutTrace(text: string): string {
  const lines = text.split('\n');
  let i = 0;
  const trace = /^(Return-Path|Received|Delivered-To|Envelope-to|Delivery-date|X-Postern-[A-Za-z-]+):/i;
  while (i < lines.length && trace.test(lines[i]!)) {
    i++;
    while (i < lines.length && /^[ \t]/.test(lines[i]!)) i++;
  }
  return lines.slice(i).join('\n');
}

export interface DsnReport {
  /** The top-level media type: multipart/report (RFC 6522), or what the sender used instead. */
  container: string;
  /** report-type of the multipart/report (RFC 6522). */
  reportType: string;
  /** The per-message group, then one group per recipient; field names in lower case. */
  groups: Array<Map<string, string>>;
  /** The human-readable first part. */
  text: string;
}

/**
 * RFC 3464 read back: asserts a message/delivery-status part inside a multipart/report, or
 * inside any multipart with `anyContainer` (OpenSMTPD 6.8 sends multipart/mixed).
 */
export async function readDsn(raw: string | Buffer, o: { anyContainer?: boolean } = {}): Promise<DsnReport> {
  const e = await PostalMime.parse(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw, { attachmentEncoding: 'utf8', forceRfc822Attachments: true });
  const ct = e.headers.find((h) => h.key === 'content-type')?.value ?? '';
  assert.match(ct, o.anyContainer === true ? /^multipart\/[\w-]+;/i : /^multipart\/report;/i, 'a multipart/report (RFC 6522)');
  const status = e.attachments.find((a) => a.mimeType === 'message/delivery-status');
  assert.ok(status, `a message/delivery-status part: ${e.attachments.map((a) => a.mimeType).join(', ')}`);
  const text = String(status.content).replace(/\r\n/g, '\n').replace(/\n[ \t]+/g, ' ');
  const groups = text
    .split(/\n\s*\n/)
    .map((g) => g.trim())
    .filter((g) => g !== '')
    .map((g) => new Map(g.split('\n').map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as [string, string])));
  return { container: ct.slice(0, ct.indexOf(';')).trim().toLowerCase(), reportType: /report-type=([\w-]+)/i.exec(ct)?.[1] ?? '', groups, text: e.text ?? '' };
}
