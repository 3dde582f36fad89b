/**
 * retireSuperseded's decision, with its repositories faked (the sync-worker lab test runs it for
 * real): a retiring credential is retired once every enabled node runs a version compiled without
 * it, and stays retiring while the live version still holds it or a node lags or drifted.
 */
import { describe, expect, it } from 'vitest';
import { createCredentialRotation } from '../../src/services/credential-rotation.js';

type Rotation = Parameters<typeof createCredentialRotation>[0];

function harness(nodes: Array<{ liveVersion: string | null; driftDetected: boolean }>, retiring: string[]) {
  const retired: string[] = [];
  const audited: string[] = [];
  const deps = {
    prisma: { $transaction: (work: (tx: unknown) => Promise<unknown>) => work({}) },
    nodes: { listEnabled: () => Promise.resolve(nodes) },
    credentials: {
      listRetiring: () => Promise.resolve(retiring.map((id) => ({ id, tenantId: null }))),
      setStatus: (_tx: unknown, id: string) => Promise.resolve(void retired.push(id)),
    },
    audit: {
      record: (_tx: unknown, entry: { resourceId: string }) => Promise.resolve(void audited.push(entry.resourceId)),
    },
    relays: {},
    credentialService: {},
    now: () => new Date('2026-12-07T00:00:00Z'),
  } as unknown as Rotation;
  return { rotation: createCredentialRotation(deps), retired, audited };
}

/** A version's credential ids at 100,000 domains: many, the retiring ones among them or not. */
const manyIds = (extra: string[]) => [...Array.from({ length: 90_000 }, (_, i) => `c-${i}`), ...extra];

describe('retireSuperseded', () => {
  const live = { liveVersion: 'v2', driftDetected: false };

  it('retires the retiring credentials the live version no longer holds, and keeps the ones it holds', async () => {
    const { rotation, retired, audited } = harness([live, live], ['old-1', 'c-17', 'old-2']);
    await rotation.retireSuperseded({ version: 'v2', credentialIds: manyIds([]) });
    expect(retired).toEqual(['old-1', 'old-2']);
    expect(audited).toEqual(['old-1', 'old-2']);
  });

  it('retires nothing while a node runs another version or drifted', async () => {
    for (const other of [
      { liveVersion: 'v1', driftDetected: false },
      { liveVersion: 'v2', driftDetected: true },
    ]) {
      const { rotation, retired } = harness([live, other], ['old-1']);
      await rotation.retireSuperseded({ version: 'v2', credentialIds: manyIds([]) });
      expect(retired).toEqual([]);
    }
  });

  it('retires nothing when none is retiring', async () => {
    const { rotation, retired } = harness([live], []);
    await rotation.retireSuperseded({ version: 'v2', credentialIds: manyIds(['old-1']) });
    expect(retired).toEqual([]);
  });
});
