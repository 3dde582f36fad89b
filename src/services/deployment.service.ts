import type { PrismaClient } from '../db/prisma.js';
import { NotFoundError } from '../lib/errors.js';
import { type PageRequest, toPage } from '../lib/pagination.js';
import type { AuditRepository } from '../repositories/audit.repository.js';
import type { DeploymentRepository } from '../repositories/deployment.repository.js';
import { auditEntry } from './audit.service.js';
import type { ConfigService } from './config.service.js';
import { decodeDeploymentCursor, encodeDeploymentCursor, presentDeployment } from './deployment-records.js';
import { requireAdmin, type RequestContext } from './principal.js';

const ADMIN_ONLY = 'deployments span every tenant: admin only';

/** Deployments as the API asks for and lists them; the sync worker runs them (src/jobs/sync.ts). */
interface Deps {
  prisma: PrismaClient;
  deployments: DeploymentRepository;
  audit: AuditRepository;
  config: Pick<ConfigService, 'compileForDeploy' | 'deployedStored'>;
}

export function createDeploymentService(deps: Deps) {
  const { prisma } = deps;

  return {
    /** Asks the leading sync worker (whichever process it runs in) for a deploy now. */
    async request(ctx: RequestContext) {
      requireAdmin(ctx, ADMIN_ONLY);
      const compiled = await deps.config.compileForDeploy();
      // Nothing waits here for a node: the answer shows the bundle stored and its quarantine recorded.
      await deps.config.deployedStored();
      const row = await prisma.$transaction(async (tx) => {
        const created = await deps.deployments.create(tx, {
          version: compiled.bundle.version,
          reason: 'manual',
          requestedBy: ctx.actor.keyId,
        });
        await deps.audit.record(
          tx,
          auditEntry(ctx, {
            tenantId: null,
            action: 'deployment.requested',
            resourceId: created.id,
            changes: { version: compiled.bundle.version },
          }),
        );
        await deps.deployments.notifyRequested(tx);
        return created;
      });
      return presentDeployment(row);
    },

    async list(ctx: RequestContext, query: PageRequest) {
      requireAdmin(ctx, ADMIN_ONLY);
      const rows = await deps.deployments.list(prisma, {
        after: decodeDeploymentCursor(query.cursor),
        take: query.limit + 1,
      });
      const page = toPage(rows, query.limit, encodeDeploymentCursor);
      return { items: page.items.map(presentDeployment), next_cursor: page.next_cursor };
    },

    async get(ctx: RequestContext, id: string) {
      requireAdmin(ctx, ADMIN_ONLY);
      const row = await deps.deployments.findById(prisma, id);
      if (row === null) throw new NotFoundError('deployment', id);
      return presentDeployment(row);
    },
  };
}

export type DeploymentService = ReturnType<typeof createDeploymentService>;
