/** Field-level changes for the audit log: `{ field: { from, to } }` for each field that differs. */
export function changedFields<T extends Record<string, unknown>>(
  before: T | null,
  after: Partial<T>,
  fields: Array<keyof T & string>,
) {
  const changes: Record<string, { from: unknown; to: unknown }> = {};
  for (const field of fields) {
    if (!(field in after)) continue;
    const from = before === null ? null : normalize(before[field]);
    const to = normalize(after[field]);
    if (JSON.stringify(from) !== JSON.stringify(to)) changes[field] = { from, to };
  }
  return changes;
}

function normalize(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  return value ?? null;
}
