import type { Db } from '../db/prisma.js';
import type { CredentialStatus, Prisma } from '../generated/prisma/client.js';

export interface CredentialQuery {
  relayId: string;
  tenantId?: string | undefined;
  domainId?: string | undefined;
  status?: CredentialStatus | undefined;
  afterId?: string | undefined;
  take: number;
}

export function createCredentialRepository() {
  return {
    create(db: Db, data: Prisma.RelayCredentialUncheckedCreateInput) {
      return db.relayCredential.create({ data });
    },
    findById(db: Db, id: string) {
      return db.relayCredential.findUnique({ where: { id }, include: { relay: true } });
    },
    /** The active credential of a scope (relay + domain, or relay-wide when domainId is null). */
    findActive(db: Db, relayId: string, domainId: string | null) {
      return db.relayCredential.findFirst({ where: { relayId, domainId, status: 'active' } });
    },
    list(db: Db, query: CredentialQuery) {
      return db.relayCredential.findMany({
        where: {
          relayId: query.relayId,
          tenantId: query.tenantId,
          domainId: query.domainId,
          status: query.status,
          id: query.afterId === undefined ? undefined : { gt: query.afterId },
        },
        orderBy: { id: 'asc' },
        take: query.take,
      });
    },
    setStatus(db: Db, id: string, data: Prisma.RelayCredentialUncheckedUpdateInput) {
      return db.relayCredential.update({ where: { id }, data });
    },
    /** Credentials replaced by a newer active one but possibly still live on some node. */
    listRetiring(db: Db) {
      return db.relayCredential.findMany({ where: { status: 'retiring' }, orderBy: { id: 'asc' } });
    },
    delete(db: Db, id: string) {
      return db.relayCredential.delete({ where: { id } });
    },
    recordTest(db: Db, data: Prisma.CredentialTestUncheckedCreateInput) {
      return db.credentialTest.create({ data });
    },
  };
}

export type CredentialRepository = ReturnType<typeof createCredentialRepository>;
