// Every relative link in README.md, BENCHMARKS.md and docs/*.md points at a file of the repository,
// and a link's #anchor at a heading of the page it names (GitHub's heading ids), so moving or
// renaming a page or a section cannot leave a dangling link behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const PAGES = ['README.md', 'BENCHMARKS.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** The text outside fenced code blocks and inline code spans, where links are links. */
export function prose(markdown: string): string {
  let fenced = false;
  const out: string[] = [];
  for (const line of markdown.split('\n')) {
    if (line.trimStart().startsWith('```')) { fenced = !fenced; continue; }
    if (!fenced) out.push(line.replace(/`[^`]*`/g, ''));
  }
  return out.join('\n');
}

/** Markdown link targets: `[text](target)` and `[text](target "title")`. */
export function links(markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1]!);
}

/** GitHub's id of a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

function anchors(markdown: string): Set<string> {
  const ids = new Set<string>();
  for (const line of prose(markdown).split('\n')) {
    const m = /^#{1,6}\s+(.*)$/.exec(line);
    if (m === null) continue;
    let id = slug(m[1]!);
    for (let n = 1; ids.has(id); n++) id = `${slug(m[1]!)}-${n}`;
    ids.add(id);
  }
  return ids;
}

test('the link helpers read links, headings and code as GitHub does', () => {
  assert.deepEqual(links('see [a](docs/a.md) and [b](b.md#x "t") but `[c](c.md)`\n```\n[d](d.md)\n```'), ['docs/a.md', 'b.md#x']);
  assert.equal(slug('Line ends and SMTP smuggling'), 'line-ends-and-smtp-smuggling');
  assert.equal(slug('Connections, pools and TLS'), 'connections-pools-and-tls');
  assert.deepEqual([...anchors('# A\n## A\n```\n# not\n```')], ['a', 'a-1']);
});

test('every relative link in README.md and docs/ points at an existing file and heading', () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    const text = readFileSync(join(ROOT, page), 'utf8');
    for (const target of links(text)) {
      if (/^[a-z][a-z+.-]*:/i.test(target)) continue; // http:, https:, mailto:
      const [path = '', anchor] = target.split('#');
      const file = path === '' ? join(ROOT, page) : resolve(dirname(join(ROOT, page)), decodeURI(path));
      const inRepo = !relative(ROOT, file).startsWith('..');
      if (!inRepo || !existsSync(file)) { broken.push(`${page}: ${target} (no such file in the repository)`); continue; }
      if (anchor !== undefined && anchor !== '' && file.endsWith('.md') && statSync(file).isFile()) {
        if (!anchors(readFileSync(file, 'utf8')).has(anchor)) broken.push(`${page}: ${target} (no such heading)`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

test('no page refers to a path outside the repository', () => {
  const outside = PAGES.filter((page) => /\.\.\/shared|\/work\//.test(readFileSync(join(ROOT, page), 'utf8')));
  assert.deepEqual(outside, []);
});
