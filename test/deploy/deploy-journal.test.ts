/**
 * The deploy journal records steps in the order they began (the order the node ran them), whatever
 * order their answers settle in: one packet from the node may answer several steps sent ahead.
 */
import { describe, expect, it } from 'vitest';
import { DeployJournal, skipStep } from '../../src/deploy/deploy-journal.js';
import type { DeployEvent } from '../../src/deploy/deploy-types.js';

function journal() {
  let tick = 0;
  const events: DeployEvent[] = [];
  const clock = { now: () => new Date(Date.UTC(2026, 0, 1, 0, 0, 0, (tick += 1))), sleep: async () => {} };
  const j = new DeployJournal(
    'v',
    clock,
    (e) => events.push(e),
    (err) => String(err),
  );
  return { j, events };
}

/** A promise and the functions that settle it. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe('DeployJournal', () => {
  it('records steps in the order they began when later ones settle first', async () => {
    const { j, events } = journal();
    const [promote, sw, reload] = [deferred<string>(), deferred<void>(), deferred<void>()];
    const steps = [
      j.step('promote', () => promote.promise),
      j.step('switch', () => sw.promise),
      j.step('reload', () => reload.promise),
    ];
    reload.resolve();
    sw.resolve();
    await Promise.resolve();
    expect(j.steps).toEqual([]);
    promote.resolve('/releases/v');
    expect(await steps[0]).toBe('/releases/v');
    await Promise.all(steps);
    expect(j.steps.map((s) => s.step)).toEqual(['promote', 'switch', 'reload']);
    expect(events.map((e) => (e.type === 'step' ? e.step : e.type))).toEqual(['promote', 'switch', 'reload']);
    // Each step is timed from the end of the one before it (the node ran them one after the other).
    for (let i = 1; i < j.steps.length; i++) expect(j.steps[i]!.startedAt).toEqual(j.steps[i - 1]!.finishedAt);
  });

  it('records a failure in its place and no record for the steps the node skipped behind it', async () => {
    const { j } = journal();
    const [sw, apply] = [deferred<void>(), deferred<void>()];
    const steps = [
      j.step('switch', () => sw.promise),
      j.step('apply', () => apply.promise),
      j.step('reload', async () => skipStep('reload')),
    ].map((p) => p.catch((err: unknown) => err));
    try {
      skipStep('apply');
    } catch (err) {
      apply.reject(err);
    }
    sw.reject(new Error('rename failed'));
    await Promise.all(steps);
    expect(j.steps.map((s) => [s.step, s.ok, s.detail])).toEqual([['switch', false, 'Error: rename failed']]);
    // The next step after them is recorded: nothing waits on the skipped ones.
    await j.step('rollback', async () => 'done');
    expect(j.steps.map((s) => s.step)).toEqual(['switch', 'rollback']);
  });
});
