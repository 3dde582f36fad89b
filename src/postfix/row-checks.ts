/**
 * The structural checks of one row each (settings, tenant, relay, domain, credential, destination
 * policy) and of limits: everything of a row that could reach a Postfix file. validate.ts runs them
 * while it indexes a snapshot; incremental-index.ts runs them on the rows a change brings.
 */
import type { ProblemList, ResourceType } from './errors.js';
import {
  isPostfixTime,
  isValidDestinationPattern,
  isValidDomainName,
  isValidPort,
  isValidRelayHost,
  isValidSaslSecret,
  isValidSaslUsername,
  postfixTimeSeconds,
} from './map-encoding.js';
import type {
  Credential,
  DestinationPolicy,
  Domain,
  Relay,
  RelayLimits,
  SenderLimits,
  Settings,
  Tenant,
} from './snapshot.js';

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
      problems.add(
        'invalid_limits',
        resourceType,
        resourceId,
        `${what}: ${field} must be an integer from ${min} to ${max}, got ${String(value)}`,
      );
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

export function checkSettings(s: Settings, problems: ProblemList): void {
  const bad = (message: string) => problems.add('invalid_settings', 'settings', null, message);
  if (!Number.isInteger(s.defaultConcurrency) || s.defaultConcurrency < 1 || s.defaultConcurrency > 10_000) {
    bad(`defaultConcurrency must be an integer from 1 to 10000, got ${String(s.defaultConcurrency)}`);
  }
  if (
    !Number.isInteger(s.defaultRateDelaySeconds) ||
    s.defaultRateDelaySeconds < 0 ||
    s.defaultRateDelaySeconds > 86_400
  ) {
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
  if (postfixTimeSeconds(s.maximalBackoffTime) < minBackoff)
    bad('maximalBackoffTime must not be shorter than minimalBackoffTime');
}

export function checkTenant(t: Tenant, problems: ProblemList): void {
  if (t.status !== 'active' && t.status !== 'suspended')
    problems.add('invalid_value', 'tenant', t.id, `unknown tenant status ${String(t.status)}`);
  checkLimits(t.defaultLimits, 'tenant', t.id, 'tenant default limits', problems);
}

export function checkRelay(r: Relay, tenants: ReadonlyMap<string, Tenant>, problems: ProblemList): void {
  if (!isValidRelayHost(r.host)) {
    problems.add(
      'invalid_host',
      'relay',
      r.id,
      `relay host ${JSON.stringify(r.host)} must be a lower-case DNS name or an IP literal without brackets`,
    );
  }
  if (!isValidPort(r.port))
    problems.add('invalid_host', 'relay', r.id, `relay port ${String(r.port)} must be an integer from 1 to 65535`);
  if (!['starttls', 'implicit', 'opportunistic'].includes(r.tls))
    problems.add('invalid_value', 'relay', r.id, `unknown relay TLS mode ${String(r.tls)}`);
  if (r.tls === 'opportunistic' && r.verify) {
    problems.add(
      'tls_opportunistic_verify',
      'relay',
      r.id,
      'opportunistic TLS cannot verify the certificate (Postfix level "may" never checks it): use starttls or implicit with verify',
    );
  }
  if (r.tenantId !== null && !tenants.has(r.tenantId))
    problems.add('dangling_reference', 'relay', r.id, `relay owner tenant ${r.tenantId} does not exist`);
  checkLimits(r.limits, 'relay', r.id, `relay ${r.host}:${r.port} limits`, problems);
}

export function checkDomain(
  d: Domain,
  index: { tenants: ReadonlyMap<string, Tenant>; relays: ReadonlyMap<string, Relay> },
  problems: ProblemList,
): void {
  if (typeof d.name !== 'string' || !isValidDomainName(d.name)) {
    problems.add(
      'invalid_name',
      'domain',
      d.id,
      `domain name ${JSON.stringify(d.name)} must be a lower-case ASCII DNS name with at least two labels`,
    );
  }
  if (!index.tenants.has(d.tenantId))
    problems.add('dangling_reference', 'domain', d.id, `domain tenant ${d.tenantId} does not exist`);
  if (!['pending', 'verified', 'degraded', 'failed', 'disabled'].includes(d.status)) {
    problems.add('invalid_value', 'domain', d.id, `unknown domain status ${String(d.status)}`);
  }
  if (d.route !== 'relay' && d.route !== 'direct')
    problems.add('invalid_value', 'domain', d.id, `unknown route ${String(d.route)}`);
  for (const [field, id] of [
    ['relayId', d.relayId],
    ['fallbackRelayId', d.fallbackRelayId],
  ] as const) {
    if (id !== null && !index.relays.has(id))
      problems.add('dangling_reference', 'domain', d.id, `${field} ${id} does not exist`);
  }
  checkLimits(d.limits, 'domain', d.id, `domain ${d.name} limits`, problems);
}

/** `domain`: the credential's domain as found by its domainId (undefined for a relay-wide one, or none found). */
export function checkCredential(
  c: Credential,
  domain: Domain | undefined,
  relays: ReadonlyMap<string, Relay>,
  problems: ProblemList,
): void {
  const relay = relays.get(c.relayId);
  if (relay === undefined)
    problems.add('dangling_reference', 'credential', c.id, `credential relay ${c.relayId} does not exist`);
  if (c.domainId !== null && domain === undefined)
    problems.add('dangling_reference', 'credential', c.id, `credential domain ${c.domainId} does not exist`);
  // Never echo the values: they may be secrets.
  if (typeof c.username !== 'string' || !isValidSaslUsername(c.username)) {
    problems.add(
      'invalid_credential',
      'credential',
      c.id,
      'SASL username must be 1-255 characters without whitespace, control characters or ":"',
    );
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
    problems.add(
      'invalid_credential',
      'credential',
      c.id,
      'credential fingerprint must be 16-64 lower-case hex digits',
    );
  }
  if (relay?.tenantId != null && domain !== undefined && domain.tenantId !== relay.tenantId) {
    problems.add(
      'relay_not_allowed',
      'credential',
      c.id,
      `credential scopes domain ${domain.name} of another tenant to a tenant-owned relay`,
    );
  }
}

export function checkPolicy(p: DestinationPolicy, problems: ProblemList): void {
  if (typeof p.pattern !== 'string' || !isValidDestinationPattern(p.pattern)) {
    problems.add(
      'invalid_name',
      'destinationPolicy',
      p.id,
      `destination pattern ${JSON.stringify(p.pattern)} must be example.com or .example.com (lower-case ASCII)`,
    );
  }
  if (p.tls !== null && !['may', 'encrypt', 'verify', 'secure'].includes(p.tls)) {
    problems.add('invalid_value', 'destinationPolicy', p.id, `unknown TLS level ${String(p.tls)}`);
  }
  // Range checks only: these limits are never applied (see warnings.ts), so no combination refusal.
  const limits = { concurrency: p.concurrency, rateDelaySeconds: p.rateDelaySeconds, recipientsPerMessage: null };
  checkLimits(limits, 'destinationPolicy', p.id, `destination ${p.pattern}`, problems, false);
}
