/**
 * Structural validation of a Snapshot and the lookup index the resolver works on. Everything that
 * could reach a Postfix file is checked here (names, hosts, credentials, limits, times), so the
 * resolver and the renderer only ever see well-formed data. Route semantics (ownership, fallback
 * compatibility, limit combinations) are checked in resolve.ts, for routed domains only.
 */
import type { ProblemList, ResourceType } from './errors.js';
import {
  formatNexthop,
  isPostfixTime,
  isValidDestinationPattern,
  isValidDomainName,
  isValidPort,
  isValidRelayHost,
  isValidSaslSecret,
  isValidSaslUsername,
  postfixTimeSeconds,
} from './map-encoding.js';
import type { Credential, DestinationPolicy, Domain, Relay, RelayLimits, SenderLimits, Settings, Snapshot, Tenant } from './snapshot.js';

export interface SnapshotIndex {
  settings: Settings;
  tenants: ReadonlyMap<string, Tenant>;
  relays: ReadonlyMap<string, Relay>;
  domainsById: ReadonlyMap<string, Domain>;
  domainsByName: ReadonlyMap<string, Domain>;
  /** Active credentials by relay id, then by domain id (null: the relay-wide one). */
  credentialsByRelay: ReadonlyMap<string, ReadonlyMap<string | null, Credential>>;
  /** `[host]:port` of every relay, formatted once: every hop of every route uses it. */
  nexthops: ReadonlyMap<string, string>;
  /** Relays holding at least one domain-scoped credential. */
  relaysWithDomainCredentials: ReadonlySet<string>;
  /** Sorted by pattern. */
  destinationPolicies: readonly DestinationPolicy[];
  /**
   * Quarantined rows (`unitKey()`s) the compiler could not express: not checked, and every sender
   * domain they reach resolves as `quarantined` (quarantine.ts). Empty but for such compiles.
   */
  held: ReadonlySet<string>;
}

/** How a row is named in `held` and in quarantine reports. */
export function unitKey(resourceType: ResourceType, resourceId: string | null): string {
  return `${resourceType}:${resourceId ?? ''}`;
}

const NOTHING_HELD: ReadonlySet<string> = new Set();

const LIMIT_RANGES = {
  concurrency: [1, 10_000],
  rateDelaySeconds: [0, 86_400],
  recipientsPerMessage: [1, 100_000],
  connectionReuseSeconds: [1, 86_400],
} as const;

type LimitField = keyof typeof LIMIT_RANGES;

/** Range checks plus the combinations Postfix cannot honour within one limits object. */
export function checkLimits(
  limits: SenderLimits | RelayLimits | null,
  resourceType: ResourceType,
  resourceId: string,
  what: string,
  problems: ProblemList,
  combinations = true,
): void {
  if (limits === null) return;
  let ok = true;
  for (const field of Object.keys(LIMIT_RANGES) as LimitField[]) {
    const value = (limits as Partial<Record<LimitField, number | null>>)[field] ?? null;
    if (value === null) continue;
    const [min, max] = LIMIT_RANGES[field];
    if (!Number.isInteger(value) || value < min || value > max) {
      problems.add('invalid_limits', resourceType, resourceId, `${what}: ${field} must be an integer from ${min} to ${max}, got ${String(value)}`);
      ok = false;
    }
  }
  if (!ok || !combinations) return;
  const { concurrency, rateDelaySeconds, recipientsPerMessage } = limits;
  if (concurrency !== null && concurrency > 1 && rateDelaySeconds !== null && rateDelaySeconds > 0) {
    problems.add(
      'limits_conflict',
      resourceType,
      resourceId,
      `${what}: concurrency ${concurrency} together with a rate delay of ${rateDelaySeconds}s cannot be honoured: ` +
        'a delay between deliveries makes the Postfix queue manager deliver one message at a time. Set concurrency to 1 or remove the delay.',
    );
  }
  if (recipientsPerMessage === 1 && (concurrency !== null || (rateDelaySeconds !== null && rateDelaySeconds > 0))) {
    problems.add(
      'limits_conflict',
      resourceType,
      resourceId,
      `${what}: recipientsPerMessage 1 makes Postfix apply concurrency and rate delay per recipient instead of per destination, ` +
        'so those limits would not be honoured. Raise recipientsPerMessage or remove the other limits.',
    );
  }
}

function checkSettings(s: Settings, problems: ProblemList): void {
  const bad = (message: string) => problems.add('invalid_settings', 'settings', null, message);
  if (!Number.isInteger(s.defaultConcurrency) || s.defaultConcurrency < 1 || s.defaultConcurrency > 10_000) {
    bad(`defaultConcurrency must be an integer from 1 to 10000, got ${String(s.defaultConcurrency)}`);
  }
  if (!Number.isInteger(s.defaultRateDelaySeconds) || s.defaultRateDelaySeconds < 0 || s.defaultRateDelaySeconds > 86_400) {
    bad(`defaultRateDelaySeconds must be an integer from 0 to 86400, got ${String(s.defaultRateDelaySeconds)}`);
  } else if (s.defaultConcurrency > 1 && s.defaultRateDelaySeconds > 0) {
    bad(
      `defaultConcurrency ${s.defaultConcurrency} together with defaultRateDelaySeconds ${s.defaultRateDelaySeconds} cannot be honoured: ` +
        'a rate delay makes the queue manager deliver one message at a time per destination.',
    );
  }
  if (!['all', 'ipv4', 'ipv6'].includes(s.inetProtocols)) bad(`inetProtocols must be all, ipv4 or ipv6`);
  if (!['any', 'ipv4', 'ipv6'].includes(s.addressPreference)) bad(`addressPreference must be any, ipv4 or ipv6`);
  const times = {
    maximalQueueLifetime: s.maximalQueueLifetime,
    bounceQueueLifetime: s.bounceQueueLifetime,
    minimalBackoffTime: s.minimalBackoffTime,
    maximalBackoffTime: s.maximalBackoffTime,
  };
  let timesOk = true;
  for (const [name, value] of Object.entries(times)) {
    if (typeof value !== 'string' || !isPostfixTime(value)) {
      bad(`${name} must be a Postfix time such as 5d or 300s, got ${JSON.stringify(value)}`);
      timesOk = false;
    }
  }
  if (!timesOk) return;
  const minBackoff = postfixTimeSeconds(s.minimalBackoffTime);
  if (minBackoff < 1) bad('minimalBackoffTime must be at least 1s');
  if (postfixTimeSeconds(s.maximalBackoffTime) < minBackoff) bad('maximalBackoffTime must not be shorter than minimalBackoffTime');
}

function uniqueById<T extends { id: string }>(rows: readonly T[], type: ResourceType, problems: ProblemList, held: ReadonlySet<string> = NOTHING_HELD): Map<string, T> {
  const byId = new Map<string, T>();
  for (const row of rows) {
    if (typeof row.id !== 'string' || row.id === '') {
      problems.add('invalid_value', type, null, `a ${type} has an empty id`);
    } else if (byId.has(row.id)) {
      // A quarantined duplicate is left out: the first row of the id stands.
      if (!held.has(unitKey(type, row.id))) problems.add('duplicate_id', type, row.id, `two ${type} rows share the id ${row.id}`);
    } else {
      byId.set(row.id, row);
    }
  }
  return byId;
}

export function checkTenant(t: Tenant, problems: ProblemList): void {
  if (t.status !== 'active' && t.status !== 'suspended') problems.add('invalid_value', 'tenant', t.id, `unknown tenant status ${String(t.status)}`);
  checkLimits(t.defaultLimits, 'tenant', t.id, 'tenant default limits', problems);
}

export function checkRelay(r: Relay, tenants: ReadonlyMap<string, Tenant>, problems: ProblemList): void {
  if (!isValidRelayHost(r.host)) {
    problems.add('invalid_host', 'relay', r.id, `relay host ${JSON.stringify(r.host)} must be a lower-case DNS name or an IP literal without brackets`);
  }
  if (!isValidPort(r.port)) problems.add('invalid_host', 'relay', r.id, `relay port ${String(r.port)} must be an integer from 1 to 65535`);
  if (!['starttls', 'implicit', 'opportunistic'].includes(r.tls)) problems.add('invalid_value', 'relay', r.id, `unknown relay TLS mode ${String(r.tls)}`);
  if (r.tls === 'opportunistic' && r.verify) {
    problems.add(
      'tls_opportunistic_verify',
      'relay',
      r.id,
      'opportunistic TLS cannot verify the certificate (Postfix level "may" never checks it): use starttls or implicit with verify',
    );
  }
  if (r.tenantId !== null && !tenants.has(r.tenantId)) problems.add('dangling_reference', 'relay', r.id, `relay owner tenant ${r.tenantId} does not exist`);
  checkLimits(r.limits, 'relay', r.id, `relay ${r.host}:${r.port} limits`, problems);
}

export function checkDomain(d: Domain, index: { tenants: ReadonlyMap<string, Tenant>; relays: ReadonlyMap<string, Relay> }, problems: ProblemList): void {
  if (typeof d.name !== 'string' || !isValidDomainName(d.name)) {
    problems.add('invalid_name', 'domain', d.id, `domain name ${JSON.stringify(d.name)} must be a lower-case ASCII DNS name with at least two labels`);
  }
  if (!index.tenants.has(d.tenantId)) problems.add('dangling_reference', 'domain', d.id, `domain tenant ${d.tenantId} does not exist`);
  if (!['pending', 'verified', 'degraded', 'failed', 'disabled'].includes(d.status)) {
    problems.add('invalid_value', 'domain', d.id, `unknown domain status ${String(d.status)}`);
  }
  if (d.route !== 'relay' && d.route !== 'direct') problems.add('invalid_value', 'domain', d.id, `unknown route ${String(d.route)}`);
  for (const [field, id] of [
    ['relayId', d.relayId],
    ['fallbackRelayId', d.fallbackRelayId],
  ] as const) {
    if (id !== null && !index.relays.has(id)) problems.add('dangling_reference', 'domain', d.id, `${field} ${id} does not exist`);
  }
  checkLimits(d.limits, 'domain', d.id, `domain ${d.name} limits`, problems);
}

/** `domain`: the credential's domain as found by its domainId (undefined for a relay-wide one, or none found). */
export function checkCredential(c: Credential, domain: Domain | undefined, relays: ReadonlyMap<string, Relay>, problems: ProblemList): void {
  const relay = relays.get(c.relayId);
  if (relay === undefined) problems.add('dangling_reference', 'credential', c.id, `credential relay ${c.relayId} does not exist`);
  if (c.domainId !== null && domain === undefined) problems.add('dangling_reference', 'credential', c.id, `credential domain ${c.domainId} does not exist`);
  // Never echo the values: they may be secrets.
  if (typeof c.username !== 'string' || !isValidSaslUsername(c.username)) {
    problems.add('invalid_credential', 'credential', c.id, 'SASL username must be 1-255 characters without whitespace, control characters or ":"');
  }
  if (typeof c.secret !== 'string' || !isValidSaslSecret(c.secret)) {
    problems.add(
      'invalid_credential',
      'credential',
      c.id,
      'SASL secret must be 1-1024 characters without control characters and without whitespace at either end',
    );
  }
  // The fingerprint stands in for the secret in masked tables: hex only, so nothing else can ride along.
  if (typeof c.fingerprint !== 'string' || !/^[0-9a-f]{16,64}$/.test(c.fingerprint)) {
    problems.add('invalid_credential', 'credential', c.id, 'credential fingerprint must be 16-64 lower-case hex digits');
  }
  if (relay?.tenantId != null && domain !== undefined && domain.tenantId !== relay.tenantId) {
    problems.add('relay_not_allowed', 'credential', c.id, `credential scopes domain ${domain.name} of another tenant to a tenant-owned relay`);
  }
}

function checkPolicy(p: DestinationPolicy, problems: ProblemList): void {
  if (typeof p.pattern !== 'string' || !isValidDestinationPattern(p.pattern)) {
    problems.add('invalid_name', 'destinationPolicy', p.id, `destination pattern ${JSON.stringify(p.pattern)} must be example.com or .example.com (lower-case ASCII)`);
  }
  if (p.tls !== null && !['may', 'encrypt', 'verify', 'secure'].includes(p.tls)) {
    problems.add('invalid_value', 'destinationPolicy', p.id, `unknown TLS level ${String(p.tls)}`);
  }
  // Range checks only: these limits are never applied (see warnings.ts), so no combination refusal.
  const limits = { concurrency: p.concurrency, rateDelaySeconds: p.rateDelaySeconds, recipientsPerMessage: null };
  checkLimits(limits, 'destinationPolicy', p.id, `destination ${p.pattern}`, problems, false);
}

/** The destination policies checked and sorted by pattern, as the index holds them (quarantined ones left out). */
export function indexPolicies(rows: readonly DestinationPolicy[], problems: ProblemList, held: ReadonlySet<string> = NOTHING_HELD): DestinationPolicy[] {
  const policies = [...uniqueById(rows, 'destinationPolicy', problems, held).values()].filter((p) => !held.has(unitKey('destinationPolicy', p.id)));
  const patterns = new Map<string, string>();
  for (const p of policies) {
    checkPolicy(p, problems);
    const other = patterns.get(p.pattern);
    if (other !== undefined) problems.add('duplicate_name', 'destinationPolicy', p.id, `destination pattern ${p.pattern} also exists as ${other}`);
    else patterns.set(p.pattern, p.id);
  }
  policies.sort((a, b) => (a.pattern < b.pattern ? -1 : a.pattern > b.pattern ? 1 : a.id < b.id ? -1 : 1));
  return policies;
}

/**
 * Validates everything structural and indexes the snapshot; problems go to `problems`. Rows in
 * `held` are indexed (so that what refers to them resolves as quarantined) but not checked; a held
 * domain whose name no table could carry, or that another domain has, gets no name at all.
 */
export function buildIndex(snapshot: Snapshot, problems: ProblemList, held: ReadonlySet<string> = NOTHING_HELD): SnapshotIndex {
  const isHeld = (type: ResourceType, id: string) => held.size > 0 && held.has(unitKey(type, id));
  checkSettings(snapshot.settings, problems);
  const tenants = uniqueById(snapshot.tenants, 'tenant', problems, held);
  for (const t of tenants.values()) if (!isHeld('tenant', t.id)) checkTenant(t, problems);
  const relays = uniqueById(snapshot.relays, 'relay', problems, held);
  const nexthops = new Map<string, string>();
  for (const r of relays.values()) {
    if (isHeld('relay', r.id)) continue;
    checkRelay(r, tenants, problems);
    nexthops.set(r.id, formatNexthop(r.host, r.port));
  }

  const domainsById = uniqueById(snapshot.domains, 'domain', problems, held);
  const domainsByName = new Map<string, Domain>();
  for (const d of domainsById.values()) {
    const heldDomain = isHeld('domain', d.id);
    if (!heldDomain) checkDomain(d, { tenants, relays }, problems);
    const other = domainsByName.get(d.name);
    if (heldDomain && (other !== undefined || typeof d.name !== 'string' || !isValidDomainName(d.name))) continue;
    if (other !== undefined) problems.add('duplicate_name', 'domain', d.id, `domain ${d.name} also exists as ${other.id}`);
    else domainsByName.set(d.name, d);
  }

  const credentialsByRelay = new Map<string, Map<string | null, Credential>>();
  const relaysWithDomainCredentials = new Set<string>();
  for (const c of uniqueById(snapshot.credentials, 'credential', problems, held).values()) {
    const domain = c.domainId === null ? undefined : domainsById.get(c.domainId);
    if (!isHeld('credential', c.id)) checkCredential(c, domain, relays, problems);
    let scopes = credentialsByRelay.get(c.relayId);
    if (scopes === undefined) credentialsByRelay.set(c.relayId, (scopes = new Map()));
    // Keyed by the domain's own id string where it exists: the resolver looks up with domain.id,
    // and the same string object compares without reading its characters (100,000 lookups).
    const scope = c.domainId === null ? null : (domain?.id ?? c.domainId);
    const other = scopes.get(scope);
    if (other !== undefined) {
      if (!isHeld('credential', c.id)) problems.add('duplicate_credential', 'credential', c.id, `credential ${other.id} is already active for the same relay and domain scope`);
    } else {
      scopes.set(scope, c);
    }
    if (c.domainId !== null) relaysWithDomainCredentials.add(c.relayId);
  }

  const policies = indexPolicies(snapshot.destinationPolicies, problems, held);

  return {
    held,
    settings: snapshot.settings,
    tenants,
    relays,
    domainsById,
    domainsByName,
    credentialsByRelay,
    nexthops,
    relaysWithDomainCredentials,
    destinationPolicies: policies,
  };
}
