// RFC 3464 delivery status notifications read back by an independent MIME parser (postal-mime),
// for the interop tests: the report type of the multipart/report (RFC 6522) and the field
// groups of its message/delivery-status part (per-message first, then one per recipient).
import assert from 'node:assert/strict';
import PostalMime from 'postal-mime';

export interface ReadDsn {
  reportType: string;
  /** Field groups, names lower-cased, folded lines unfolded. */
  groups: Array<Map<string, string>>;
}

export async function readDsn(raw: string | Buffer): Promise<ReadDsn> {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
  const e = await PostalMime.parse(bytes, { attachmentEncoding: 'utf8', forceRfc822Attachments: true });
  const ct = e.headers.find((h) => h.key === 'content-type')?.value ?? '';
  assert.match(ct, /^multipart\/report;/i, 'a multipart/report (RFC 6522)');
  const status = e.attachments.find((a) => a.mimeType === 'message/delivery-status');
  assert.ok(status, `a message/delivery-status part: ${e.attachments.map((a) => a.mimeType).join(', ')}`);
  const text = String(status.content).replace(/\r\n/g, '\n').replace(/\n[ \t]+/g, ' ');
  const groups = text
    .split(/\n\s*\n/)
    .map((g) => g.trim())
    .filter((g) => g !== '')
    .map((g) => new Map(g.split('\n').map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as [string, string])));
  return { reportType: /report-type=([\w-]+)/i.exec(ct)?.[1] ?? '', groups };
}
