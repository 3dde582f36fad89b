/** The one builder of audit records (src/services/audit.service.ts): who, what, on which resource. */
import { expect, it } from 'vitest';
import { SYSTEM, auditEntry } from '../../src/services/audit.service.js';

const ctx = { actor: { keyId: 'key-1', scopes: ['tenant' as const], tenantId: 't-1' }, requestId: 'req-1' };

it("names a request's caller and request id", () => {
  expect(
    auditEntry(ctx, {
      tenantId: 't-1',
      action: 'relay.created',
      resourceId: 'r-1',
      changes: { name: { from: null, to: 'a' } },
    }),
  ).toEqual({
    actorKeyId: 'key-1',
    tenantId: 't-1',
    action: 'relay.created',
    resourceType: 'relay',
    resourceId: 'r-1',
    changes: { name: { from: null, to: 'a' } },
    requestId: 'req-1',
  });
});

it('names nobody for the system, or the key system work is done for', () => {
  expect(auditEntry(SYSTEM, { tenantId: null, action: 'credential.retired', resourceId: 'c-1' })).toEqual({
    actorKeyId: null,
    tenantId: null,
    action: 'credential.retired',
    resourceType: 'credential',
    resourceId: 'c-1',
    changes: null,
    requestId: null,
  });
  const entry = auditEntry(
    { actorKeyId: 'key-2', requestId: null },
    { tenantId: null, action: 'deployment.finished', resourceId: 'd-1' },
  );
  expect([entry.actorKeyId, entry.requestId, entry.resourceType]).toEqual(['key-2', null, 'deployment']);
});

it('takes the resource type from the action unless given', () => {
  expect(auditEntry(ctx, { tenantId: 't-1', action: 'api_key.revoked', resourceId: 'k' }).resourceType).toBe('api_key');
  expect(
    auditEntry(SYSTEM, { tenantId: 't-1', action: 'config.quarantined', resourceType: 'domain', resourceId: 'x' })
      .resourceType,
  ).toBe('domain');
});
