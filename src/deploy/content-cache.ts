/**
 * Results of pure functions of a table's text, kept for the last few texts seen: consecutive
 * bundles share most tables, and every node's deploy reads the same ones, so at 100,000 domains a
 * change parses and hashes only the tables it changed. Keyed by the text itself: V8 hashes a long
 * string by its length, so a lookup costs one comparison with the text it finds (by pointer when
 * it is the same string, by memcmp when an equal one).
 */
export function memoByContent<T>(compute: (content: string) => T, size = 16): (content: string) => T {
  const cache = new Map<string, T>();
  return (content) => {
    const known = cache.get(content);
    if (known !== undefined || cache.has(content)) {
      // Most recently used last.
      cache.delete(content);
      cache.set(content, known as T);
      return known as T;
    }
    const value = compute(content);
    cache.set(content, value);
    if (cache.size > size) cache.delete(cache.keys().next().value!);
    return value;
  };
}
