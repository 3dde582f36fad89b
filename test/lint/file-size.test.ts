/**
 * No file of src/ (generated code excluded) over 400 lines: past that a reader no longer holds a
 * module in their head (issue 22, STYLE.md "Size and words"). A file that must stay longer for a
 * while goes into ALLOWED below with its reason, and leaves it once split.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '..', '..');
const MAX_LINES = 400;

/** Files allowed over MAX_LINES for now, relative to the root, each with why. */
const ALLOWED: Record<string, string> = {
  // None this round: every file over the limit could be split.
};

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return relative === 'src/generated' ? [] : sourceFiles(relative);
    return entry.name.endsWith('.ts') ? [relative] : [];
  });
}

/** Lines of a text, a last line without its newline counted too (`wc -l` would miss it). */
const countLines = (text: string) => text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
const lineCount = (file: string) => countLines(readFileSync(path.join(root, file), 'utf8'));

it(`no file of src/ is over ${MAX_LINES} lines, except those allowed`, () => {
  const files = sourceFiles('src');
  expect(files.length).toBeGreaterThan(100);
  const over = files
    .filter((file) => !(file in ALLOWED) && lineCount(file) > MAX_LINES)
    .map((file) => `${file}: ${lineCount(file)} lines`);
  expect(over).toEqual([]);
});

it('every allowed file exists and is still over the limit (else it leaves the list)', () => {
  const stale = Object.keys(ALLOWED).filter((file) => {
    try {
      return lineCount(file) <= MAX_LINES;
    } catch {
      return true;
    }
  });
  expect(stale).toEqual([]);
});

it('counts every line, a last one without a newline too: MAX_LINES + 1 lines are over', () => {
  expect(countLines('x\n'.repeat(MAX_LINES + 1))).toBe(MAX_LINES + 1);
  expect(countLines(`${'x\n'.repeat(MAX_LINES)}x`)).toBe(MAX_LINES + 1);
  expect(countLines('x\n'.repeat(MAX_LINES))).toBe(MAX_LINES);
});
