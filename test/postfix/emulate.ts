/**
 * Postfix's own lookup order, replayed against a staged config with the real tools, so tests can
 * compare explainRoute() with what Postfix's tables and parameters actually say:
 * 1. smtpd: smtpd_sender_restrictions in order: reject_non_fqdn_sender (no domain, or one without
 *    a dot; a bare address, which smtpd would complete with $myorigin); check_sender_access —
 *    `static:{…}` answers itself, a table is asked for the full
 *    address, the address without extension, the domain, its parents (as `.parent` unless
 *    parent_domain_matches_subdomains lists smtpd_access_maps), then `user@`; `<>` for the null
 *    sender — where OK or REJECT decide and DUNNO or no match go on;
 * 2. trivial-rewrite: transport_maps must be empty; sender_dependent_default_transport_maps by
 *    sender (full address, address without extension, @domain; each asked of the list's maps in
 *    order) else default_transport; a
 *    non-empty transport nexthop wins, else sender_dependent_relayhost_maps, else relayhost,
 *    else the recipient domain (resolve.c);
 * 3. smtp, per nexthop of the list: SASL from the service's smtp_sasl_password_maps — by sender
 *    first when smtp_sender_dependent_authentication is on — then host, then nexthop
 *    (smtp_sasl_glue.c); TLS from the service's smtp_tls_policy_maps by nexthop, with `.parent` walking for
 *    domain nexthops only (smtp_tls_policy.c), else the service's smtp_tls_security_level;
 * 4. qmgr: `<service>_destination_*` parameters in main.cf.
 */
import path from 'node:path';
import type { Explanation, Snapshot } from '../../src/postfix/index.js';
import { parseParams, type StagedConfig } from './postfix-harness.js';

export interface PostfixAnswer {
  senderAccess: string;
  /** Where smtpd's verdict came from: a table's key, or main.cf's smtpd_sender_restrictions (a static: map or a built-in restriction). */
  decidedBy: { table: string; key: string } | null;
  /** smtpd's reply code when it refuses the sender (access_map_reject_code 554 for REJECT, 504 for reject_non_fqdn_sender, an entry's own 4NN). */
  reply: string | null;
  outcome: 'relay' | 'direct' | 'rejected';
  service: string;
  nexthops: string[];
  /** Raw SASL map value per nexthop (`user:secret`), or null when nothing matched / AUTH is off. */
  sasl: Record<string, string | null>;
  tls: Record<string, string>;
  /** Explicit main.cf qmgr parameters of the service. */
  limitParams: { concurrency?: number; rateDelaySeconds?: number; recipientsPerMessage?: number };
}

export interface PostfixConfig {
  main: Map<string, string>;
  services: Map<string, Map<string, string>>;
}

export async function readConfig(cfg: StagedConfig): Promise<PostfixConfig> {
  const main = parseParams(await cfg.postconf(['-n']));
  const services = new Map<string, Map<string, string>>();
  for (const line of (await cfg.postconf(['-P'])).split('\n')) {
    const m = /^([^/\s]+)\/unix\/([a-z0-9_]+) = (.*)$/.exec(line);
    if (m?.[1] === undefined || m[2] === undefined) continue;
    const params = services.get(m[1]) ?? new Map<string, string>();
    params.set(m[2], m[3] ?? '');
    services.set(m[1], params);
  }
  return { main, services };
}

function senderKeys(sender: string): string[] {
  if (sender === '') return ['<>'];
  const at = sender.lastIndexOf('@');
  if (at < 0) return [sender];
  const local = sender.slice(0, at);
  const plus = local.indexOf('+');
  const keys = [sender];
  if (plus > 0) keys.push(`${local.slice(0, plus)}${sender.slice(at)}`);
  keys.push(sender.slice(at));
  return keys;
}

function first(found: Map<string, string>, keys: string[]): string | undefined {
  return firstInList([found], keys);
}

/** A map list's answer (mail_addr_find over maps_find): each key form in turn, asked of every map in order. */
function firstInList(maps: Array<Map<string, string>>, keys: string[]): string | undefined {
  for (const k of keys) {
    for (const found of maps) {
      const v = found.get(k);
      if (v !== undefined) return v;
    }
  }
  return undefined;
}

/**
 * The items of a main.cf list (`hash:a, hash:b`, a restriction list), in order, split at blanks and
 * commas as Postfix splits them; a `type:{…}` item (`static:{REJECT …}`, a union) stays whole.
 */
const postfixList = (value: string): string[] => value.match(/[^\s,{}]+(?:\{[^}]*\})?/g) ?? [];

/** check_sender_access's lookup keys for a sender (access(5), smtpd_check.c check_mail_access). */
function accessKeys(sender: string, parentMatchesSubdomains: boolean): string[] {
  if (sender === '') return ['<>'];
  const address = sender.toLowerCase();
  const at = address.lastIndexOf('@');
  // smtpd resolves a bare address to `address@$myorigin` first; not modelled here, because
  // reject_non_fqdn_sender refuses such senders before any table is asked.
  if (at < 0) return [];
  const domain = address.slice(at + 1);
  // The full address and the one without its extension, as for the sender-dependent tables; then
  // the domain itself where those tables use `@domain`.
  const keys = [...senderKeys(address).slice(0, -1), domain];
  for (let dot = domain.indexOf('.'); dot >= 0; dot = domain.indexOf('.', dot + 1)) {
    keys.push(parentMatchesSubdomains ? domain.slice(dot + 1) : domain.slice(dot));
  }
  keys.push(address.slice(0, at + 1));
  return keys;
}

/** The restrictions of smtpd_sender_restrictions this emulation knows: anything else is an error. */
function parseSenderRestrictions(
  main: Map<string, string>,
): Array<{ kind: 'non-fqdn' } | { kind: 'access'; spec: string }> {
  const list = postfixList(main.get('smtpd_sender_restrictions') ?? '');
  const out: Array<{ kind: 'non-fqdn' } | { kind: 'access'; spec: string }> = [];
  for (let i = 0; i < list.length; i += 1) {
    if (list[i] === 'reject_non_fqdn_sender') out.push({ kind: 'non-fqdn' });
    else if (list[i] === 'check_sender_access' && list[i + 1] !== undefined)
      out.push({ kind: 'access', spec: list[(i += 1)]! });
    else throw new Error(`smtpd_sender_restrictions: this emulation does not cover ${list[i]}`);
  }
  return out;
}

function tlsKeys(nexthop: string): string[] {
  if (nexthop.startsWith('[')) return [nexthop];
  const keys: string[] = [];
  for (let name: string | null = nexthop; name !== null;) {
    keys.push(name);
    const dot: number = name.indexOf('.', 1);
    name = dot < 0 ? null : name.slice(dot);
  }
  return keys;
}

/** Groups lookups per map so each map is queried by one `postmap -q -` process. */
class Batch {
  private readonly wanted = new Map<string, Set<string>>();
  private results = new Map<string, Map<string, string>>();
  want(spec: string, keys: string[]): void {
    const set = this.wanted.get(spec) ?? new Set<string>();
    for (const k of keys) set.add(k);
    this.wanted.set(spec, set);
  }
  async run(cfg: StagedConfig): Promise<void> {
    const entries = [...this.wanted.entries()];
    const answers = await Promise.all(entries.map(([spec, keys]) => cfg.query(spec, [...keys])));
    this.results = new Map(entries.map(([spec], i) => [spec, answers[i] ?? new Map<string, string>()]));
  }
  get(spec: string): Map<string, string> {
    return this.results.get(spec) ?? new Map<string, string>();
  }
}

export async function askPostfix(
  cfg: StagedConfig,
  config: PostfixConfig,
  pairs: Array<[string, string]>,
): Promise<PostfixAnswer[]> {
  const { main, services } = config;
  const param = (service: string, name: string) => services.get(service)?.get(name) ?? main.get(name) ?? '';
  if ((main.get('transport_maps') ?? '') !== '')
    throw new Error('transport_maps is set: this emulation does not cover it');
  const restrictions = parseSenderRestrictions(main);
  const parentMatches = postfixList(main.get('parent_domain_matches_subdomains') ?? '').includes('smtpd_access_maps');
  const tables = restrictions.flatMap((r) => (r.kind === 'access' && !r.spec.startsWith('static:') ? [r.spec] : []));
  const transportSpecs = postfixList(main.get('sender_dependent_default_transport_maps') ?? '');
  const relaySpec = main.get('sender_dependent_relayhost_maps') ?? '';

  const phase1 = new Batch();
  for (const [sender] of pairs) {
    for (const spec of tables) phase1.want(spec, accessKeys(sender, parentMatches));
    for (const spec of transportSpecs) phase1.want(spec, senderKeys(sender));
    phase1.want(relaySpec, senderKeys(sender));
  }
  await phase1.run(cfg);

  const routes = pairs.map(([sender, recipient]) => {
    let access = '(no match)';
    let decidedBy: PostfixAnswer['decidedBy'] = null;
    let reply: string | null = null;
    for (const restriction of restrictions) {
      let verdict: string | undefined;
      let by: PostfixAnswer['decidedBy'] = { table: 'main.cf', key: 'smtpd_sender_restrictions' };
      if (restriction.kind === 'non-fqdn') {
        const domain = sender.includes('@') ? sender.slice(sender.lastIndexOf('@') + 1) : '';
        if (sender !== '' && !domain.includes('.') && !domain.startsWith('['))
          verdict = 'REJECT need fully-qualified address';
      } else if (restriction.spec.startsWith('static:')) {
        verdict = restriction.spec.slice('static:{'.length, -1).trim();
      } else {
        const found = phase1.get(restriction.spec);
        const key = accessKeys(sender, parentMatches).find((k) => found.has(k));
        verdict = key === undefined ? undefined : found.get(key);
        by =
          key === undefined
            ? null
            : { table: path.posix.basename(restriction.spec.slice(restriction.spec.indexOf(':') + 1)), key };
      }
      if (verdict === undefined || verdict === 'DUNNO') continue;
      access = verdict;
      decidedBy = by;
      if (verdict.startsWith('REJECT')) reply = restriction.kind === 'non-fqdn' ? '504 5.5.2' : '554 5.7.1';
      // An access table's `4NN x.y.z text` answers with its own code.
      const coded = /^([45]\d\d [245]\.\d{1,3}\.\d{1,3}) /.exec(verdict);
      if (coded !== null) reply = coded[1]!;
      break;
    }
    const transport =
      firstInList(
        transportSpecs.map((spec) => phase1.get(spec)),
        senderKeys(sender),
      ) ??
      main.get('default_transport') ??
      'smtp';
    const colon = transport.indexOf(':');
    const service = colon < 0 ? transport : transport.slice(0, colon);
    let nexthop = colon < 0 ? '' : transport.slice(colon + 1);
    if (nexthop === '')
      nexthop =
        first(phase1.get(relaySpec), senderKeys(sender)) ??
        (main.get('relayhost') || recipient.slice(recipient.lastIndexOf('@') + 1).toLowerCase());
    const nexthops = nexthop.split(/[,\s]+/).filter(Boolean);
    return { sender, access, decidedBy, reply, service, nexthops };
  });

  const phase2 = new Batch();
  const saslPlans = routes.map((r) => {
    // A service may override the policy table (its own tls_<service> map): smtp reads its own parameter.
    const tlsSpec = param(r.service, 'smtp_tls_policy_maps');
    const enabled = param(r.service, 'smtp_sasl_auth_enable') === 'yes';
    const bySender = param(r.service, 'smtp_sender_dependent_authentication') === 'yes' && r.sender !== '';
    const spec = param(r.service, 'smtp_sasl_password_maps');
    const keysFor = (nexthop: string) => {
      const host = nexthop.startsWith('[') ? nexthop.slice(1, nexthop.indexOf(']')) : undefined; // MX host of a domain nexthop: unknown
      return [...(bySender ? senderKeys(r.sender) : []), ...(host === undefined ? [] : [host]), nexthop];
    };
    if (enabled && spec !== '') for (const n of r.nexthops) phase2.want(spec, keysFor(n));
    for (const n of r.nexthops) phase2.want(tlsSpec, tlsKeys(n));
    return { enabled, spec, keysFor, tlsSpec };
  });
  await phase2.run(cfg);

  return routes.map((r, i) => {
    const saslPlan = saslPlans[i];
    // REJECT (554) for good, or a 4NN code (a quarantined sender: 451) for now: either way refused at
    // submission. smtpd's verdict decides for every sender, the null sender included.
    const rejected = r.access.startsWith('REJECT') || /^4\d\d /.test(r.access);
    const outcome: PostfixAnswer['outcome'] = rejected
      ? 'rejected'
      : r.service === 'retry' || r.service === 'error'
        ? 'rejected'
        : r.nexthops.every((n) => n.startsWith('['))
          ? 'relay'
          : 'direct';
    const sasl: Record<string, string | null> = {};
    const tls: Record<string, string> = {};
    const routed = outcome === 'relay' || outcome === 'direct';
    if (routed) {
      for (const n of r.nexthops) {
        sasl[n] = saslPlan?.enabled ? (first(phase2.get(saslPlan.spec), saslPlan.keysFor(n)) ?? null) : null;
        tls[n] = first(phase2.get(saslPlan?.tlsSpec ?? ''), tlsKeys(n)) ?? param(r.service, 'smtp_tls_security_level');
      }
    }
    const limitParams: PostfixAnswer['limitParams'] = {};
    const c = main.get(`${r.service}_destination_concurrency_limit`);
    const d = main.get(`${r.service}_destination_rate_delay`);
    const n = main.get(`${r.service}_destination_recipient_limit`);
    if (c !== undefined) limitParams.concurrency = Number(c);
    if (d !== undefined) limitParams.rateDelaySeconds = Number(d.replace(/s$/, ''));
    if (n !== undefined) limitParams.recipientsPerMessage = Number(n);
    return {
      senderAccess: r.access,
      decidedBy: r.decidedBy,
      reply: r.reply,
      outcome,
      service: r.service,
      nexthops: routed ? r.nexthops : [],
      sasl,
      tls,
      limitParams,
    };
  });
}

/** Differences between an explanation and Postfix's answer (empty = they agree). */
export function differences(snapshot: Snapshot, e: Explanation, a: PostfixAnswer): string[] {
  const diffs: string[] = [];
  const same = (what: string, explained: unknown, postfix: unknown) => {
    if (JSON.stringify(explained) !== JSON.stringify(postfix))
      diffs.push(`${what}: explained ${JSON.stringify(explained)}, Postfix ${JSON.stringify(postfix)}`);
  };
  same('outcome', e.outcome, a.outcome);
  const access = e.matched.find((m) => m.table === 'sender_access');
  if (access !== undefined) same('sender_access', access.value, a.senderAccess);
  const decided = e.matched[0];
  same('decided by', decided === undefined ? null : { table: decided.table, key: decided.key }, a.decidedBy);
  if (a.reply !== null && !e.reason.includes(a.reply))
    diffs.push(`reply: Postfix answers ${a.reply}, the explanation says ${JSON.stringify(e.reason)}`);
  same('service', e.service, a.service);
  same('nexthops', e.nexthops, a.nexthops);
  if (e.outcome === 'relay' || e.outcome === 'direct') {
    for (const n of e.nexthops) {
      const id = e.credentialsByNexthop[n]?.credentialId ?? null;
      const c = id === null ? undefined : snapshot.credentials.find((x) => x.id === id);
      // Comparing the full `user:secret` proves the map carries the secret byte for byte.
      same(`sasl ${n}`, c === undefined ? null : `${c.username}:${c.secret}`, a.sasl[n] ?? null);
      same(`tls ${n}`, e.tlsPolicyByNexthop[n], a.tls[n]);
    }
    same('limit params', e.limits?.params ?? {}, a.limitParams);
  }
  return diffs;
}
