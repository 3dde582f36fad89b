import { describe, expect, it } from 'vitest';
import { derivedOnce } from '../../src/lib/derived-once.js';

describe('derivedOnce', () => {
  it('derives once per object and apart for each object', () => {
    const seen: object[] = [];
    const size = derivedOnce((list: readonly string[]) => {
      seen.push(list);
      return list.length;
    });
    const a = ['x', 'y'];
    const b = ['x'];
    expect([size(a), size(a), size(b), size(a)]).toEqual([2, 2, 1, 2]);
    expect(seen).toEqual([a, b]);
  });

  it('keeps an undefined result as known', () => {
    let calls = 0;
    const nothing = derivedOnce((_: object) => {
      calls++;
      return undefined;
    });
    const key = {};
    nothing(key);
    nothing(key);
    expect(calls).toBe(1);
  });
});
