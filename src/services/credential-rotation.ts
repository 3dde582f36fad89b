/**
 * Credential rotation, the one place its transitions live: `rotate` (store a new secret and make it
 * the active one), `activate` (staged → active, the previous active one → retiring) and
 * `retireSuperseded` (retiring → retired once no enabled node runs it). The API activates, the CLI
 * rotates, the sync job retires after a deploy: all through this module.
 */
import type { PrismaClient } from '../db/prisma.js';
import { ForbiddenError, NotFoundError } from '../lib/errors.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import type { CredentialRepository } from '../repositories/credential.repository.js';
import type { NodeRepository } from '../repositories/node.repository.js';
import type { RelayRepository } from '../repositories/relay.repository.js';
import { auditEntry, SYSTEM } from './audit.service.js';
import { type CredentialInput, type CredentialService, presentCredential } from './credential.service.js';
import { isAdmin, type RequestContext } from './principal.js';

/** A compiled config version and the credentials compiled into it. */
export interface LiveVersion {
  version: string;
  credentialIds: string[];
}

interface Deps {
  prisma: PrismaClient;
  credentials: CredentialRepository;
  relays: RelayRepository;
  nodes: NodeRepository;
  audit: AuditRepository;
  /** Storing a credential (validation, scope, sealing) and finding one the caller may see. */
  credentialService: Pick<CredentialService, 'create' | 'loadVisible'>;
  now?: (() => Date) | undefined;
}

export function createCredentialRotation(deps: Deps) {
  const now = deps.now ?? (() => new Date());

  /**
   * Makes a credential the one compiled into Postfix. The previous active one of its scope becomes
   * `retiring`: nodes still run it until the next deployment reaches them all; `retireSuperseded`
   * marks it `retired` once every enabled node runs a version compiled without it.
   */
  async function activate(ctx: RequestContext, id: string) {
    const target = await deps.credentialService.loadVisible(ctx, id);
    if (!isAdmin(ctx.actor) && target.relay.tenantId === null && target.domainId === null) {
      throw new ForbiddenError('relay-wide credentials of shared relays are managed by admins');
    }
    const activated = await deps.prisma.$transaction(async (tx) => {
      await deps.relays.lock(tx, target.relayId);
      const fresh = await deps.credentials.findById(tx, id);
      if (fresh === null) throw new NotFoundError('credential', id);
      if (fresh.status === 'active') return fresh;
      const previous = await deps.credentials.findActive(tx, fresh.relayId, fresh.domainId);
      if (previous !== null) {
        await deps.credentials.setStatus(tx, previous.id, { status: 'retiring', retiredAt: null });
        await deps.audit.record(
          tx,
          auditEntry(ctx, {
            tenantId: previous.tenantId,
            action: 'credential.retiring',
            resourceId: previous.id,
            changes: { status: { from: 'active', to: 'retiring' }, replacedBy: id },
          }),
        );
      }
      const row = await deps.credentials.setStatus(tx, id, { status: 'active', activatedAt: now(), retiredAt: null });
      await deps.audit.record(
        tx,
        auditEntry(ctx, {
          tenantId: row.tenantId,
          action: 'credential.activated',
          resourceId: row.id,
          changes: { status: { from: fresh.status, to: 'active' }, replaces: previous?.id ?? null },
        }),
      );
      return row;
    });
    return presentCredential(activated);
  }

  return {
    activate,

    /** A new secret for a scope, active at once: stored (staged, or active when the scope has none), then activated. */
    async rotate(ctx: RequestContext, relayId: string, input: CredentialInput) {
      const created = await deps.credentialService.create(ctx, relayId, input);
      return created.status === 'active' ? created : activate(ctx, created.id);
    },

    /**
     * After a deploy: a retiring credential is live nowhere once every enabled node runs a version
     * compiled without it, and then it is retired. (Every node on `live.version`, and the
     * credential is not in that version.)
     */
    async retireSuperseded(live: LiveVersion) {
      await deps.prisma.$transaction(async (tx) => {
        const enabled = await deps.nodes.listEnabled(tx);
        if (enabled.some((node) => node.liveVersion !== live.version || node.driftDetected)) return;
        const retiring = await deps.credentials.listRetiring(tx);
        // Usually none or a few: the version's ids (one per credential, 90,000 at 100,000 domains)
        // are looked up in the retiring ones, not indexed themselves.
        const retiringIds = new Set(retiring.map((credential) => credential.id));
        const inVersion = new Set(retiring.length === 0 ? [] : live.credentialIds.filter((id) => retiringIds.has(id)));
        for (const credential of retiring) {
          if (inVersion.has(credential.id)) continue;
          await deps.credentials.setStatus(tx, credential.id, { status: 'retired', retiredAt: now() });
          await deps.audit.record(
            tx,
            auditEntry(SYSTEM, {
              tenantId: credential.tenantId,
              action: 'credential.retired',
              resourceId: credential.id,
              changes: {
                status: { from: 'retiring', to: 'retired' },
                liveVersion: live.version,
                nodes: enabled.length,
              },
            }),
          );
        }
      });
    },
  };
}

export type CredentialRotation = ReturnType<typeof createCredentialRotation>;
