/**
 * The reconcile's full compile in a worker thread (src/services/full-compile-thread.ts): the same
 * version as compile() on this thread, the compiler's refusal brought back as a refusal, and the
 * event loop left free while the thread compiles.
 */
import { describe, expect, it } from 'vitest';
import { compile } from '../../src/postfix/index.js';
import { fullCompileVersionInThread } from '../../src/services/full-compile-thread.js';
import { domain, relay, richSnapshot, settings, snapshot, tenant } from './fixtures.js';

describe('fullCompileVersionInThread', () => {
  it('gives the version compile() gives here', async () => {
    const rich = richSnapshot();
    expect(await fullCompileVersionInThread(rich)).toEqual({ version: compile(rich).version, threadHeapBytes: expect.any(Number) });
    const empty = snapshot();
    expect(await fullCompileVersionInThread(empty)).toEqual({ version: compile(empty).version, threadHeapBytes: expect.any(Number) });
  });

  it('brings a refusal back as a refusal', async () => {
    const refused = snapshot({ settings: settings({ defaultConcurrency: 0 }), tenants: [tenant('t1')], relays: [relay('r1')], domains: [domain('d1', 't1', 'one.example', { relayId: 'r1' })] });
    let message = '';
    try {
      compile(refused);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^cannot compile/);
    expect(await fullCompileVersionInThread(refused)).toEqual({ refused: message, threadHeapBytes: expect.any(Number) });
  });

  it('leaves the event loop free: a timer set before the call fires before the answer', async () => {
    // A compile on this thread (even behind a promise) would answer before any timer could fire.
    let fired = false;
    setTimeout(() => (fired = true), 0);
    await fullCompileVersionInThread(richSnapshot());
    expect(fired).toBe(true);
  });
});
