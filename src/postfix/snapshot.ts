/**
 * The compiler's input: plain data, no Prisma types. The loader (src/db side) builds one Snapshot
 * from the database in one transaction; the compiler turns it into a Postfix config bundle and
 * never looks anything up elsewhere. Field names are a contract with the loader: keep them stable.
 */

/** Node-wide queue and protocol settings (main.cf). */
export interface Settings {
  /** default_destination_concurrency_limit: parallel deliveries per (service, nexthop) queue. */
  defaultConcurrency: number;
  /** default_destination_rate_delay in seconds; 0 = none. A delay forces one delivery at a time. */
  defaultRateDelaySeconds: number;
  /** inet_protocols. Changing it needs `postfix stop; postfix start`, not a reload. */
  inetProtocols: 'all' | 'ipv4' | 'ipv6';
  /** smtp_address_preference. */
  addressPreference: 'any' | 'ipv4' | 'ipv6';
  /** maximal_queue_lifetime, a Postfix time: digits plus an optional unit s|m|h|d|w (e.g. '5d'). */
  maximalQueueLifetime: string;
  /** bounce_queue_lifetime (Postfix time). Also bounds how long node-generated DSNs wait. */
  bounceQueueLifetime: string;
  /** minimal_backoff_time (Postfix time, at least 1s). */
  minimalBackoffTime: string;
  /** maximal_backoff_time (Postfix time, not below minimalBackoffTime). */
  maximalBackoffTime: string;
}

/** The settings of a fresh installation (the settings table's defaults), also where invalid settings fall back to. */
export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  defaultConcurrency: 20,
  defaultRateDelaySeconds: 0,
  inetProtocols: 'all',
  addressPreference: 'any',
  maximalQueueLifetime: '432000s',
  bounceQueueLifetime: '432000s',
  minimalBackoffTime: '300s',
  maximalBackoffTime: '4000s',
});

/**
 * Limits for mail of one sender domain (or a tenant's per-domain default). null = not set here.
 * Postfix's queue manager enforces them per (service, nexthop) queue: see resolve.ts.
 */
export interface SenderLimits {
  /** Maximum parallel deliveries (integer >= 1). */
  concurrency: number | null;
  /** Minimum seconds between deliveries (integer >= 0). Non-zero means one delivery at a time. */
  rateDelaySeconds: number | null;
  /** Maximum recipients per delivery (integer >= 1). */
  recipientsPerMessage: number | null;
}

/** A relay provider's own limits. */
export interface RelayLimits extends SenderLimits {
  /** smtp_connection_reuse_time_limit in seconds; only where Postfix can cache connections. */
  connectionReuseSeconds: number | null;
}

export type TenantStatus = 'active' | 'suspended';

export interface Tenant {
  id: string;
  /** Not used in any output (free text never reaches a map). */
  slug: string;
  /** Suspended tenants' sender domains get no route at all (rejected at submission, held if queued). */
  status: TenantStatus;
  /** Per-domain default limits for the tenant's domains; a domain's own non-null fields win. */
  defaultLimits: SenderLimits | null;
}

/** starttls: must encrypt (usual port 587); implicit: TLS on connect (465); opportunistic: TLS if offered. */
export type RelayTlsMode = 'starttls' | 'implicit' | 'opportunistic';

export interface Relay {
  id: string;
  /** Not used in any output. */
  name: string;
  /** Lower-case DNS name, or IP literal (IPv6 without brackets). Always written bracketed: no MX lookup. */
  host: string;
  /** TCP port, 1..65535. */
  port: number;
  tls: RelayTlsMode;
  /** Verify the relay's certificate against its host name (TLS level `secure`). Not with opportunistic. */
  verify: boolean;
  /** null = shared by all tenants; otherwise only that tenant's domains may use it. */
  tenantId: string | null;
  limits: RelayLimits | null;
}

export type DomainStatus = 'pending' | 'verified' | 'degraded' | 'failed' | 'disabled';

export interface Domain {
  id: string;
  tenantId: string;
  /** Sender domain: ASCII (IDNA A-label), lower-case, no trailing dot. */
  name: string;
  /** Only `verified` and `degraded` (in its grace period), or any non-disabled status with compileOverride, get a route. */
  status: DomainStatus;
  /** Admin forces compiling while not verified. Never overrides `disabled`. */
  compileOverride: boolean;
  /** relay: via relayId (then fallbackRelayId); direct: the node delivers to the recipient's MX. */
  route: 'relay' | 'direct';
  relayId: string | null;
  fallbackRelayId: string | null;
  limits: SenderLimits | null;
}

export interface Credential {
  id: string;
  relayId: string;
  /** null = relay-wide: used for every sender domain on the relay that has no credential of its own. */
  domainId: string | null;
  username: string;
  /** Plaintext, decrypted by the loader. Only ever written to 0600 files; never explained. */
  secret: string;
  /**
   * The secret's keyed fingerprint (hex), computed by the loader from the secret it opened: what a
   * masked table shows in the secret's place (`username:sha:<fingerprint>`), so a rotation shows.
   */
  fingerprint: string;
}

export type TlsLevel = 'may' | 'encrypt' | 'verify' | 'secure';

export interface DestinationPolicy {
  id: string;
  /** 'example.com' (that domain only) or '.example.com' (every subdomain, not the domain itself). */
  pattern: string;
  /** Not applied by Postfix without changing routes: see resolve.ts (kept for the API, warned about). */
  concurrency: number | null;
  rateDelaySeconds: number | null;
  /** TLS level for mail the node delivers directly to matching recipient domains. */
  tls: TlsLevel | null;
}

export interface Snapshot {
  settings: Settings;
  tenants: Tenant[];
  domains: Domain[];
  relays: Relay[];
  /** Only ACTIVE credentials; at most one per (relayId, domainId) scope. */
  credentials: Credential[];
  destinationPolicies: DestinationPolicy[];
}
