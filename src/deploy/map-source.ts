/**
 * Parses a Postfix lookup table source the way postmap(1) reads it (measured on Postfix 3.7):
 * blank lines and lines whose first non-blank character is `#` are skipped; a line starting with
 * whitespace continues the previous logical line (newline dropped, its leading blanks kept); the key
 * ends at the first whitespace; the value is the rest without leading/trailing blanks (CR included);
 * hash keys are lower-cased. We need the entries to compare `postmap -s` counts and `postmap -q`
 * answers with what the bundle meant, and to refuse what postmap only warns about.
 */

import { memoByContent } from './content-cache.js';
import { fileView } from './table-view.js';

export interface MapEntry {
  /** Lower-cased, as a hash map stores it. */
  key: string;
  value: string;
  /** 1-based line where the entry starts. */
  line: number;
}

export interface ParsedMap {
  entries: MapEntry[];
  /** postmap would warn (and exit 0) on each of these; a deploy refuses them. */
  problems: string[];
}

const BLANK = /^[ \t\r\v\f]*$/;
const LEADING_BLANK = /^[ \t\r\v\f]/;

export function parseMapSource(content: string): ParsedMap {
  const logical: Array<{ text: string; line: number }> = [];
  const problems: string[] = [];
  content.split('\n').forEach((raw, i) => {
    if (BLANK.test(raw) || raw.trimStart().startsWith('#')) return;
    if (LEADING_BLANK.test(raw)) {
      const last = logical[logical.length - 1];
      if (last === undefined) problems.push(`line ${i + 1}: logical line must not start with whitespace`);
      else last.text += raw;
      return;
    }
    logical.push({ text: raw, line: i + 1 });
  });
  const entries: MapEntry[] = [];
  const seen = new Map<string, number>();
  for (const { text, line } of logical) {
    const m = /^(\S+)[ \t\r\v\f]*(.*?)[ \t\r\v\f]*$/s.exec(text);
    const key = (m?.[1] ?? '').toLowerCase();
    const value = m?.[2] ?? '';
    if (value === '') {
      problems.push(`line ${line}: expected format: key whitespace value`);
      continue;
    }
    const first = seen.get(key);
    if (first !== undefined) {
      // postmap keeps the first entry and only warns: a silent change of meaning.
      problems.push(`line ${line}: duplicate key ${JSON.stringify(key)} (first on line ${first})`);
      continue;
    }
    seen.set(key, line);
    entries.push({ key, value, line });
  }
  return { entries, problems };
}

/** A bundle file's parse, once per text: every node's deploy of a bundle, and the next bundles, read the same tables. */
const parseOnce = memoByContent(parseMapSource);

export function parsedFile(file: { content: string }): ParsedMap {
  return parseOnce(file.content);
}

/** What postmap would warn about in the table: nothing for one in the compiler's form (table-view.ts), read chunk by chunk. */
export function tableProblems(file: { content: string }): string[] {
  return fileView(file).simple ? [] : parsedFile(file).problems;
}

/** How many entries postmap stores for the table. */
export function entryCount(file: { content: string }): number {
  const view = fileView(file);
  return view.simple ? view.count : parsedFile(file).entries.length;
}

/** The table's entries at these positions (in source order; positions out of range are left out). */
export function entriesAt(file: { content: string }, positions: number[]): Array<{ key: string; value: string }> {
  const view = fileView(file);
  const count = view.simple ? view.count : parsedFile(file).entries.length;
  const inRange = positions.filter((i) => i >= 0 && i < count);
  return view.simple ? inRange.map((i) => view.entryAt(i)) : inRange.map((i) => parsedFile(file).entries[i]!);
}

/**
 * The value postmap stores for a key (lower case, as stored), undefined when it stores none: a
 * table in the compiler's form by binary search of its sorted keys, any other by the parse (the
 * first entry of a key wins, as postmap keeps it).
 */
export function valueOf(file: { content: string }, key: string): string | undefined {
  const view = fileView(file);
  if (!view.simple) return parsedFile(file).entries.find((entry) => entry.key === key)?.value;
  return view.valueAt(key);
}
