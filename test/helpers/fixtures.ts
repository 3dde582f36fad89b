import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { PrismaClient } from '../../src/db/prisma.js';
import type { SecretBox } from '../../src/lib/secret-box.js';
import type { Snapshot } from '../../src/postfix/index.js';

type Headers = Record<string, string>;

const unique = () => randomBytes(4).toString('hex');

async function post<T>(app: FastifyInstance, headers: Headers, url: string, payload: unknown): Promise<T> {
  const response = await app.inject({ method: 'POST', url, headers, payload: payload as object });
  if (response.statusCode !== 201) throw new Error(`POST ${url} answered ${response.statusCode}: ${response.body}`);
  return response.json<T>();
}

export interface TenantBody {
  id: string;
  slug: string;
  name: string;
}
export interface RelayBody {
  id: string;
  host: string;
  port: number;
  tenantId: string | null;
}
export interface DomainBody {
  id: string;
  name: string;
  tenantId: string;
}
export interface CredentialBody {
  id: string;
  status: string;
  username: string;
  fingerprint: string;
}

export function createTenant(app: FastifyInstance, headers: Headers, overrides: Record<string, unknown> = {}) {
  const id = unique();
  return post<TenantBody>(app, headers, '/v1/tenants', { name: `Tenant ${id}`, slug: `t-${id}`, ...overrides });
}

export function createRelay(app: FastifyInstance, headers: Headers, overrides: Record<string, unknown> = {}) {
  return post<RelayBody>(app, headers, '/v1/relays', {
    name: `relay ${unique()}`,
    host: 'smtp.relay.test',
    port: 587,
    tls: 'starttls',
    ...overrides,
  });
}

export function createDomain(
  app: FastifyInstance,
  headers: Headers,
  tenantId: string,
  overrides: Record<string, unknown> = {},
) {
  return post<DomainBody>(app, headers, `/v1/tenants/${tenantId}/domains`, {
    name: `d${unique()}.example`,
    ...overrides,
  });
}

export function createCredential(
  app: FastifyInstance,
  headers: Headers,
  relayId: string,
  overrides: Record<string, unknown> = {},
) {
  return post<CredentialBody>(app, headers, `/v1/relays/${relayId}/credentials`, {
    username: `user-${unique()}`,
    secret: `s3cret-${unique()}`,
    ...overrides,
  });
}

/** A tenant row written straight to the database, for tests about other resources. */
export async function seedTenant(prisma: {
  tenant: { create(args: { data: { name: string; slug: string } }): Promise<{ id: string }> };
}) {
  const id = unique();
  return prisma.tenant.create({ data: { name: `Seed ${id}`, slug: `seed-${id}` } });
}

/** A credential row written straight to the database, its secret sealed as the API would; returns its id. */
export async function insertSealedCredential(
  prisma: PrismaClient,
  secretBox: SecretBox,
  row: {
    relayId: string;
    domainId: string | null;
    status: 'staged' | 'active' | 'retiring' | 'retired';
    secret: string;
  },
): Promise<string> {
  const id = randomUUID();
  const sealed = secretBox.seal(row.secret, id);
  await prisma.relayCredential.create({
    data: {
      id,
      relayId: row.relayId,
      domainId: row.domainId,
      username: `user-${id.slice(0, 8)}`,
      secretCiphertext: new Uint8Array(sealed.ciphertext),
      secretNonce: new Uint8Array(sealed.nonce),
      secretKeyId: sealed.keyId,
      fingerprint: secretBox.fingerprint(row.secret),
      status: row.status,
    },
  });
  return id;
}

/** A snapshot with every table sorted by id: row order is not part of the loader's contract. */
export function snapshotById(snapshot: Snapshot): Snapshot {
  const sorted = <T extends { id: string }>(rows: T[]) => [...rows].sort((a, b) => (a.id < b.id ? -1 : 1));
  return {
    settings: snapshot.settings,
    tenants: sorted(snapshot.tenants),
    domains: sorted(snapshot.domains),
    relays: sorted(snapshot.relays),
    credentials: sorted(snapshot.credentials),
    destinationPolicies: sorted(snapshot.destinationPolicies),
  };
}
