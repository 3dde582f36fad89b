import { getServers } from 'node:dns';
import { ServiceUnavailableError } from '../lib/errors.js';
import type { PrismaClient } from '../db/prisma.js';
import { createSecretBox } from '../lib/secret-box.js';
import { createApiKeyRepository } from '../repositories/api-key.repository.js';
import { createAuditRepository } from '../repositories/audit.repository.js';
import { createCredentialRepository } from '../repositories/credential.repository.js';
import { createDeploymentRepository } from '../repositories/deployment.repository.js';
import { createDomainRepository } from '../repositories/domain.repository.js';
import { createNodeRepository } from '../repositories/node.repository.js';
import { createPolicyRepository, createSettingsRepository } from '../repositories/policy.repository.js';
import { createRelayRepository } from '../repositories/relay.repository.js';
import { createSnapshotRepository } from '../repositories/snapshot.repository.js';
import { createConfigBundleRepository } from '../repositories/config-bundle.repository.js';
import { createIdempotencyRepository } from '../repositories/idempotency.repository.js';
import { createQuarantineRepository } from '../repositories/quarantine.repository.js';
import { createTenantRepository } from '../repositories/tenant.repository.js';
import { createApiKeyService, type TokenClaims } from './api-key.service.js';
import { createAuditService } from './audit.service.js';
import { createBundleStore, createConfigEngine, type ConfigEngineExecution } from '../config-engine/index.js';
import { createConfigService } from './config.service.js';
import { createCredentialService } from './credential.service.js';
import { createCredentialRotation } from './credential-rotation.js';
import { Registry } from 'prom-client';
import { createDeployMetrics, type DeployMetrics } from './deploy-metrics.js';
import { DEFAULT_SSH, privateKeyReader, type SshSettings } from '../ssh/index.js';
import { createDeploymentService } from './deployment.service.js';
import { createDomainService } from './domain.service.js';
import { createHealthService } from './health.service.js';
import { createIdempotencyService } from './idempotency.service.js';
import { createNodeService } from './node.service.js';
import { createPolicyService } from './policy.service.js';
import { createRelayService } from './relay.service.js';
import { createQuarantineRecorder, createQuarantineService } from './quarantine.service.js';
import { createRouteCheck } from './route-check.js';
import { createSnapshotService } from './snapshot.service.js';
import { createTenantService } from './tenant.service.js';
import { createUsageRepository } from '../repositories/usage.repository.js';
import { createUsageService } from './usage.service.js';
import { createDnsResolver, type DnsResolver } from '../dns/index.js';
import { createDomainVerificationService } from './domain-verification.service.js';
import { DEFAULT_VERIFICATION, type VerificationSettings } from './verification-rules.js';
import { createDomainClaims } from './domain-claims.js';

export interface ServiceDeps {
  prisma: PrismaClient;
  tokenTtlSeconds: number;
  masterKey: Buffer;
  signToken: (claims: TokenClaims, expiresInSeconds: number) => string;
  now?: () => Date;
  /** Defaults: no private key, DEFAULT_SSH timeouts. */
  ssh?: Partial<SshSettings>;
  /** Defaults to a private registry (the CLI serves no /metrics). */
  metrics?: DeployMetrics;
  /** DNS servers for domain verification and node checks (undefined: the system's). */
  dnsServers?: string[] | undefined;
  /** The CA file the nodes trust; credential tests judge certificates with it (undefined: the system store). */
  tlsCaFile?: string | undefined;
  /** How long stored config bundles are kept (default DEFAULT_BUNDLE_RETENTION_SECONDS). */
  configBundleRetentionSeconds?: number;
  /** Replaces the resolver built from dnsServers. */
  dnsResolver?: DnsResolver;
  /** Where the config engine runs: in a worker thread of its own (the app, the CLI) or in-process. */
  configEngine: ConfigEngineExecution;
  /** Defaults: DEFAULT_VERIFICATION. */
  verification?: Partial<VerificationSettings>;
  log?: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

const silent = { info() {}, warn() {}, error() {} };

/** The composition root of the business layer: repositories wired into services. */
export function createServices(deps: ServiceDeps) {
  const { prisma } = deps;
  const repositories = {
    apiKeys: createApiKeyRepository(),
    audit: createAuditRepository(),
    tenants: createTenantRepository(),
    domains: createDomainRepository(),
    relays: createRelayRepository(),
    credentials: createCredentialRepository(),
    policies: createPolicyRepository(),
    settings: createSettingsRepository(),
    nodes: createNodeRepository(),
    deployments: createDeploymentRepository(),
    usage: createUsageRepository(),
  };
  const snapshotRepository = createSnapshotRepository();
  const routes = createRouteCheck({ snapshots: snapshotRepository });
  const tenants = createTenantService({ prisma, tenants: repositories.tenants, audit: repositories.audit, routes });
  const secretBox = createSecretBox(deps.masterKey);
  const snapshots = createSnapshotService({ prisma, snapshots: snapshotRepository, secretBox });
  const relays = createRelayService({
    prisma,
    relays: repositories.relays,
    tenants: repositories.tenants,
    audit: repositories.audit,
    routes,
  });
  const bundles = createBundleStore({
    prisma,
    repository: createConfigBundleRepository(),
    ...(deps.configBundleRetentionSeconds !== undefined ? { retentionSeconds: deps.configBundleRetentionSeconds } : {}),
  });
  const quarantineRepository = createQuarantineRepository();
  const engine =
    deps.configEngine.execution === 'in-process'
      ? createConfigEngine({
          execution: 'in-process',
          snapshots,
          bundles,
          log: deps.log ?? silent,
          quarantine: createQuarantineRecorder({
            prisma,
            repository: quarantineRepository,
            audit: repositories.audit,
            now: deps.now,
          }),
        })
      : createConfigEngine({ ...deps.configEngine, masterKey: deps.masterKey, log: deps.log ?? silent });
  const ssh: SshSettings = { ...DEFAULT_SSH, ...deps.ssh };
  const metrics = deps.metrics ?? createDeployMetrics(new Registry());
  const config = createConfigService({ engine, bundles, log: deps.log ?? silent, metrics });
  const quarantine = createQuarantineService({ prisma, repository: quarantineRepository });
  const readPrivateKey = privateKeyReader(ssh.privateKeyPath);
  const usage = createUsageService({ prisma, usage: repositories.usage, tenants: repositories.tenants, now: deps.now });
  const resolver = () => {
    if (deps.dnsResolver !== undefined) return deps.dnsResolver;
    const servers = deps.dnsServers ?? getServers();
    if (servers.length === 0) {
      throw new ServiceUnavailableError(
        'no DNS server to verify with: the system has none configured; set RELAYPLANE_DNS_SERVERS',
      );
    }
    return createDnsResolver({ servers });
  };
  const claims = createDomainClaims({ domains: repositories.domains, audit: repositories.audit });
  const domainVerification = createDomainVerificationService({
    prisma,
    domains: repositories.domains,
    relays: repositories.relays,
    audit: repositories.audit,
    claims,
    resolver,
    settings: { ...DEFAULT_VERIFICATION, ...deps.verification },
    metrics,
    log: deps.log ?? silent,
    now: deps.now,
  });
  const credentials = createCredentialService({
    prisma,
    credentials: repositories.credentials,
    relays: repositories.relays,
    domains: repositories.domains,
    relayService: relays,
    audit: repositories.audit,
    secretBox,
    tlsCaFile: deps.tlsCaFile,
    now: deps.now,
  });
  const credentialRotation = createCredentialRotation({
    prisma,
    credentials: repositories.credentials,
    relays: repositories.relays,
    nodes: repositories.nodes,
    audit: repositories.audit,
    credentialService: credentials,
    now: deps.now,
  });
  return {
    usage,
    quarantine,
    domainVerification,
    apiKeys: createApiKeyService({
      prisma,
      apiKeys: repositories.apiKeys,
      audit: repositories.audit,
      signToken: deps.signToken,
      tokenTtlSeconds: deps.tokenTtlSeconds,
      tenantExists: tenants.exists,
      now: deps.now,
    }),
    audit: createAuditService({ prisma, audit: repositories.audit }),
    health: createHealthService({ prisma, quarantine }),
    idempotency: createIdempotencyService({ prisma, records: createIdempotencyRepository() }),
    tenants,
    domains: createDomainService({
      prisma,
      domains: repositories.domains,
      tenants: repositories.tenants,
      relays: repositories.relays,
      audit: repositories.audit,
      dnsRecordsOf: domainVerification.recordsOf,
      quarantine,
      routes,
      claims,
      missingForRoute: domainVerification.missingForRoute,
      now: deps.now,
    }),
    relays,
    credentials,
    credentialRotation,
    snapshots,
    config,
    policies: createPolicyService({
      prisma,
      policies: repositories.policies,
      settings: repositories.settings,
      audit: repositories.audit,
      routes,
    }),
    nodes: createNodeService({
      prisma,
      nodes: repositories.nodes,
      audit: repositories.audit,
      config,
      usage,
      quarantine,
      resolver,
      ssh,
      readPrivateKey,
      now: deps.now,
    }),
    deployments: createDeploymentService({
      prisma,
      deployments: repositories.deployments,
      audit: repositories.audit,
      config,
    }),
  };
}

export type AppServices = ReturnType<typeof createServices>;
