/** Small builders for compiler snapshots: each test states only what matters to it. */
import { createHash } from 'node:crypto';
import type {
  Credential,
  DestinationPolicy,
  Domain,
  Relay,
  Settings,
  Snapshot,
  Tenant,
} from '../../src/postfix/index.js';

export function settings(overrides: Partial<Settings> = {}): Settings {
  return {
    defaultConcurrency: 20,
    defaultRateDelaySeconds: 0,
    inetProtocols: 'ipv4',
    addressPreference: 'any',
    maximalQueueLifetime: '5d',
    bounceQueueLifetime: '5d',
    minimalBackoffTime: '300s',
    maximalBackoffTime: '4000s',
    ...overrides,
  };
}

export function tenant(id: string, overrides: Partial<Tenant> = {}): Tenant {
  return { id, slug: id, status: 'active', defaultLimits: null, ...overrides };
}

export function relay(id: string, overrides: Partial<Relay> = {}): Relay {
  return {
    id,
    name: id,
    host: `${id}.relay.test`,
    port: 587,
    tls: 'starttls',
    verify: false,
    tenantId: null,
    limits: null,
    ...overrides,
  };
}

export function domain(id: string, tenantId: string, name: string, overrides: Partial<Domain> = {}): Domain {
  return {
    id,
    tenantId,
    name,
    status: 'verified',
    compileOverride: false,
    route: 'relay',
    relayId: null,
    fallbackRelayId: null,
    limits: null,
    ...overrides,
  };
}

/** Stands in for the loader's keyed fingerprint (pure tests have no master key): changes with the secret. */
export function fingerprintOf(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 16);
}

export function credential(
  id: string,
  relayId: string,
  domainId: string | null,
  username = `user-${id}`,
  secret = `secret-${id}`,
): Credential {
  return { id, relayId, domainId, username, secret, fingerprint: fingerprintOf(secret) };
}

/** The same credential with another secret (and so another fingerprint), as the loader gives a rotated one. */
export function withSecret(c: Credential, secret: string): Credential {
  return { ...c, secret, fingerprint: fingerprintOf(secret) };
}

export function policy(id: string, pattern: string, overrides: Partial<DestinationPolicy> = {}): DestinationPolicy {
  return { id, pattern, concurrency: null, rateDelaySeconds: null, tls: null, ...overrides };
}

export function snapshot(parts: Partial<Snapshot> = {}): Snapshot {
  return {
    settings: settings(),
    tenants: [],
    domains: [],
    relays: [],
    credentials: [],
    destinationPolicies: [],
    ...parts,
  };
}

/**
 * Two tenants sharing one smart host with their own domain-scoped credentials, a tenant-owned relay
 * with a relay-wide credential and a fallback, a limited domain, a direct domain, a suspended
 * tenant and an unverified domain.
 */
export function richSnapshot(): Snapshot {
  return snapshot({
    tenants: [
      tenant('t-a'),
      tenant('t-b', { defaultLimits: { concurrency: 2, rateDelaySeconds: null, recipientsPerMessage: null } }),
      tenant('t-c', { status: 'suspended' }),
    ],
    relays: [
      relay('shared', { host: 'smtp.shared.test', port: 587 }),
      relay('own-a', { host: 'mail.a-provider.test', port: 465, tls: 'implicit', verify: true, tenantId: 't-a' }),
      relay('backup-a', {
        host: 'backup.a-provider.test',
        port: 465,
        tls: 'implicit',
        tenantId: 't-a',
        limits: { concurrency: 1, rateDelaySeconds: 2, recipientsPerMessage: null, connectionReuseSeconds: 60 },
      }),
      relay('open', { host: '192.0.2.10', port: 2525, tls: 'opportunistic' }),
    ],
    domains: [
      domain('d-a1', 't-a', 'a.example', { relayId: 'shared' }),
      domain('d-a2', 't-a', 'a2.example', { relayId: 'own-a', fallbackRelayId: 'backup-a' }),
      domain('d-a3', 't-a', 'direct.example', { route: 'direct' }),
      domain('d-b1', 't-b', 'b.example', { relayId: 'shared' }),
      domain('d-c1', 't-c', 'c.example', { relayId: 'shared' }),
      domain('d-a4', 't-a', 'pending.example', { status: 'pending', relayId: 'shared' }),
      domain('d-a5', 't-a', 'open.example', { relayId: 'open' }),
    ],
    credentials: [
      credential('c-shared-a', 'shared', 'd-a1', 'alice@shared', 'pa ss:wo#rd"é'),
      credential('c-shared-b', 'shared', 'd-b1', 'bob@shared', 'b-secret'),
      credential('c-own-a', 'own-a', null, 'a-main', 'a-main-secret'),
      credential('c-backup-a', 'backup-a', 'd-a2', 'a-backup', 'a-backup-secret'),
    ],
    destinationPolicies: [
      policy('p-gmail', 'gmail.test', { tls: 'verify' }),
      policy('p-sub', '.yahoo.test', { tls: 'encrypt', concurrency: 2 }),
    ],
  });
}
