/** What stands in for a removed secret in any text Relayplane shows, stores or logs. */
export const REDACTED = '[redacted]';

/**
 * `text` with every stretch covered by occurrences of `forms` (found in the text as it came,
 * overlapping ones merged) replaced by one REDACTED. Replacing form after form instead would let a
 * later form match across an earlier marker, or inside it. Empty forms are ignored.
 */
export function redactAll(text: string, forms: Iterable<string>): string {
  const spans: Array<[number, number]> = [];
  for (const form of forms) {
    if (form === '') continue;
    for (let at = text.indexOf(form); at !== -1; at = text.indexOf(form, at + 1)) spans.push([at, at + form.length]);
  }
  if (spans.length === 0) return text;
  spans.sort((a, b) => a[0] - b[0]);
  let out = '';
  let done = 0;
  for (let i = 0; i < spans.length;) {
    const start = spans[i]![0];
    let end = spans[i]![1];
    for (i += 1; i < spans.length && spans[i]![0] <= end; i += 1) end = Math.max(end, spans[i]![1]);
    out += `${text.slice(done, start)}${REDACTED}`;
    done = end;
  }
  return out + text.slice(done);
}
