/**
 * A function of an object that is never changed after it is made (a compiled bundle, a delta, a
 * file list), computed once per object however often it is asked and forgotten with the object.
 */
export function derivedOnce<K extends object, V>(derive: (key: K) => V): (key: K) => V {
  const known = new WeakMap<K, V>();
  return (key) => {
    if (known.has(key)) return known.get(key)!;
    const value = derive(key);
    known.set(key, value);
    return value;
  };
}
