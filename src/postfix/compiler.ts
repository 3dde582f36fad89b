/**
 * compile(snapshot) → Bundle: pure and deterministic (every list sorted, no clock, no randomness,
 * no I/O), so the same rows always give byte-identical files and the same version.
 *
 * What Postfix does with mail, by sender (see tables.ts and plan.ts for the details):
 * - routed relay domain: `@d service:` + `@d [relay]:port[,fallback]` + its credential(s); TLS
 *   policy per bracketed nexthop; limits on the service's queue.
 * - routed direct domain: `@d smtp:` (or its own limited service) and NO relayhost entry; with
 *   relayhost empty the nexthop is the recipient domain's MX. Never authenticates.
 * - every other sender (unknown, suspended tenant, unverified/disabled domain, null sender): refused
 *   at submission by smtpd_sender_restrictions (554 5.7.1 with the reason; 504 5.5.2 for a sender
 *   without a fully-qualified domain; see tables.ts), and if already queued, held by the
 *   `retry:` default_transport. Node-generated bounces (null sender) therefore wait in the queue
 *   until bounce_queue_lifetime instead of leaving unauthenticated or directly.
 */
import {
  DIR_PLACEHOLDER,
  bundleVersion,
  renderBundle,
  type Bundle,
  type BundleFile,
  type FileDigests,
  type MasterService,
} from './bundle.js';
import { ProblemList } from './errors.js';
import { MapEncodingError, renderHashMap } from './map-encoding.js';
import { planRoutes, type RoutePlan, type ServicePlan } from './plan.js';
import { planWithQuarantine } from './quarantine.js';
import type { Snapshot } from './snapshot.js';
import {
  PARENT_DOMAIN_MATCHES_SUBDOMAINS,
  TABLE,
  UNROUTED_TRANSPORT,
  globalSaslEntries,
  senderAccessEntries,
  senderRelayEntries,
  senderRestrictions,
  senderServiceEntries,
  senderTransportEntries,
  serviceSaslEntries,
  tlsPolicyEntries,
  type SaslTable,
} from './tables.js';

export function tablePath(name: string): string {
  return `hash:${DIR_PLACEHOLDER}/${name}`;
}

/** main.cf parameters that set a generated service's queue-manager limits. */
export function serviceLimitParams(service: ServicePlan): Record<string, string> {
  const { params } = service.limits;
  const out: Record<string, string> = {};
  if (params.concurrency !== undefined)
    out[`${service.name}_destination_concurrency_limit`] = String(params.concurrency);
  if (params.rateDelaySeconds !== undefined)
    out[`${service.name}_destination_rate_delay`] = `${params.rateDelaySeconds}s`;
  if (params.recipientsPerMessage !== undefined)
    out[`${service.name}_destination_recipient_limit`] = String(params.recipientsPerMessage);
  return out;
}

function mainCf(plan: RoutePlan): Record<string, string> {
  const s = plan.index.settings;
  const params: Record<string, string> = {
    default_destination_concurrency_limit: String(s.defaultConcurrency),
    default_destination_rate_delay: `${s.defaultRateDelaySeconds}s`,
    inet_protocols: s.inetProtocols,
    smtp_address_preference: s.addressPreference,
    maximal_queue_lifetime: s.maximalQueueLifetime,
    bounce_queue_lifetime: s.bounceQueueLifetime,
    minimal_backoff_time: s.minimalBackoffTime,
    maximal_backoff_time: s.maximalBackoffTime,
    // Nothing may route around the sender-dependent tables: transport_maps overrules them (and an
    // entry with an empty nexthop goes to the recipient MX), relay_domains recipients skip
    // sender_dependent_default_transport_maps, a relayhost would catch direct domains, and
    // smtp_fallback_relay would be appended to every relay route.
    transport_maps: '',
    relay_domains: '',
    relayhost: '',
    smtp_fallback_relay: '',
    default_transport: UNROUTED_TRANSPORT,
    // First match wins: a service of the sender's own, else smtp: for any routed sender.
    sender_dependent_default_transport_maps: `${tablePath(TABLE.senderService)}, ${tablePath(TABLE.senderTransport)}`,
    sender_dependent_relayhost_maps: tablePath(TABLE.senderRelay),
    smtp_sasl_auth_enable: 'yes',
    smtp_sender_dependent_authentication: 'yes',
    smtp_sasl_password_maps: tablePath(TABLE.saslPasswd),
    // The encoding relies on the first ':' splitting user from password: fixed in 3.7; 3.8+ has
    // smtp_sasl_password_result_delimiter (default ':'), which 3.7's postconf flags as unknown.
    smtp_sasl_security_options: 'noanonymous',
    smtp_sasl_tls_security_options: 'noanonymous',
    smtp_tls_policy_maps: tablePath(TABLE.tlsPolicy),
    // Direct deliveries without a destination policy; relays always have a policy entry.
    smtp_tls_security_level: 'may',
    smtpd_sender_restrictions: senderRestrictions(tablePath(TABLE.senderAccess)),
    parent_domain_matches_subdomains: PARENT_DOMAIN_MATCHES_SUBDOMAINS,
  };
  for (const service of plan.services) Object.assign(params, serviceLimitParams(service));
  return params;
}

/**
 * Each generated service logs under its own name (`<instance>/rp_…/smtp`), so the log shows which
 * service (and so which limits) carried a delivery. `-o syslog_name=${syslog_name}/…` would nest
 * forever; this repeats Postfix's own default for syslog_name instead of referring to it.
 */
export function serviceSyslogName(name: string): string {
  return `\${multi_instance_name?{$multi_instance_name}:{postfix}}/${name}`;
}

function masterService(service: ServicePlan): MasterService {
  const options: Record<string, string> = { syslog_name: serviceSyslogName(service.name) };
  if (service.implicitTls) {
    // TLS on connect is a per-service switch; the policy table still sets the level per nexthop.
    options.smtp_tls_wrappermode = 'yes';
    options.smtp_tls_security_level = 'encrypt';
  }
  if (service.tlsPolicyMap !== null) options.smtp_tls_policy_maps = tablePath(service.tlsPolicyMap);
  if (service.sasl === 'service' && service.saslMap !== null) {
    options.smtp_sender_dependent_authentication = 'no';
    options.smtp_sasl_password_maps = tablePath(service.saslMap);
  } else if (service.sasl === 'none') {
    options.smtp_sasl_auth_enable = 'no';
  }
  if (service.limits.connectionReuseSeconds !== null) {
    options.smtp_connection_reuse_time_limit = `${service.limits.connectionReuseSeconds}s`;
  }
  const sorted = Object.fromEntries(Object.entries(options).sort(([a], [b]) => (a < b ? -1 : 1)));
  return {
    name: service.name,
    type: 'unix',
    private: '-',
    unpriv: '-',
    chroot: 'n',
    wakeup: '-',
    maxproc: '-',
    command: 'smtp',
    options: sorted,
    args: Object.entries(sorted).flatMap(([k, v]) => ['-o', `${k}=${v}`]),
  };
}

/** Belt and braces: nothing unsafe may reach main.cf or master.cf, whatever the plan says. */
function checkConfig(bundle: Omit<Bundle, 'version' | 'warnings' | 'quarantine'>, problems: ProblemList): void {
  const rendered = renderBundle({ ...bundle, version: '', warnings: [], quarantine: [] }, '/x');
  for (const [k, v] of Object.entries(rendered.mainCf)) {
    if (!/^[a-z0-9_]+$/.test(k) || /[\p{Cc}\p{Cs}$]/u.test(v) || v !== v.trim()) {
      problems.add('unsafe_output', 'settings', null, `unsafe main.cf parameter ${JSON.stringify(k)}`);
    }
  }
  for (const s of rendered.masterCf) {
    const okName = /^rp_[a-z0-9_]+$/.test(s.name);
    const okOptions = Object.entries(s.options).every(
      ([k, v]) =>
        /^[a-z0-9_]+$/.test(k) &&
        (/^[A-Za-z0-9._:/-]+$/.test(v) || (k === 'syslog_name' && v === serviceSyslogName(s.name))),
    );
    if (!okName || !okOptions)
      problems.add('unsafe_output', 'settings', null, `unsafe master.cf service ${JSON.stringify(s.name)}`);
  }
}

export function bundleFile(content: string): BundleFile {
  return { content, mode: 0o644, secret: false, mapType: 'hash' };
}

/** A table holding secrets: mode 0600, and its masked rendering beside it (see BundleFile.masked). */
export function secretBundleFile(content: string, masked: string): BundleFile {
  return { content, mode: 0o600, secret: true, mapType: 'hash', masked };
}

/** Renders an already planned snapshot. */
export function compilePlan(plan: RoutePlan, digests?: FileDigests): Bundle {
  const problems = new ProblemList();
  const files: Record<string, BundleFile> = {};
  const addMap = (name: string, render: () => BundleFile) => {
    try {
      files[name] = render();
    } catch (err) {
      if (!(err instanceof MapEncodingError)) throw err;
      problems.add('unsafe_output', 'settings', null, `table ${name}: ${err.message}`);
    }
  };
  const publicMap = (entries: Array<[string, string]>) => () => bundleFile(renderHashMap(entries));
  const secretMap = (table: SaslTable) => () =>
    secretBundleFile(renderHashMap(table.entries), renderHashMap(table.masked));
  addMap(TABLE.senderTransport, publicMap(senderTransportEntries(plan)));
  addMap(TABLE.senderService, publicMap(senderServiceEntries(plan)));
  addMap(TABLE.senderRelay, publicMap(senderRelayEntries(plan)));
  addMap(TABLE.saslPasswd, secretMap(globalSaslEntries(plan)));
  addMap(TABLE.tlsPolicy, publicMap(tlsPolicyEntries(plan)));
  addMap(TABLE.senderAccess, publicMap(senderAccessEntries(plan)));
  for (const service of plan.services) {
    if (service.saslMap !== null) addMap(service.saslMap, secretMap(serviceSaslEntries(service)));
    if (service.tlsPolicyMap !== null) addMap(service.tlsPolicyMap, publicMap(service.tlsPolicies));
  }

  return assembleBundle(plan, files, problems, digests);
}

/** The bundle around rendered tables: main.cf, master.cf, checks, version. Throws CompileError. */
export function assembleBundle(
  plan: RoutePlan,
  files: Record<string, BundleFile>,
  problems = new ProblemList(),
  digests?: FileDigests,
): Bundle {
  const body = { files, mainCf: mainCf(plan), masterCf: plan.services.map(masterService) };
  checkConfig(body, problems);
  problems.throwIfAny();
  return { version: bundleVersion(body, digests), ...body, warnings: [...plan.warnings], quarantine: [] };
}

/**
 * Validates, resolves and renders; what Postfix cannot express is quarantined (quarantine.ts), with
 * `lastGood` (the previous compile's effective rows) standing in where it can. Throws CompileError
 * only for unsafe output, which the validators make unreachable from input.
 */
export function compile(snapshot: Snapshot, options: { lastGood?: Snapshot | null } = {}): Bundle {
  const { detailed, quarantine } = planWithQuarantine(snapshot, options.lastGood ?? null);
  return { ...compilePlan(detailed.plan), quarantine };
}

/** compile(), refusing instead of quarantining: every problem of the snapshot as a CompileError. */
export function compileStrict(snapshot: Snapshot): Bundle {
  return compilePlan(planRoutes(snapshot));
}
