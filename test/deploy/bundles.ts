/**
 * Hand-built bundles for the deployer tests, shaped like the compiler's output: per-tenant
 * sender_relay / sasl_passwd (secret) / tls_policy maps, main.cf parameters pointing at
 * `hash:{{dir}}/…`, and an implicit-TLS smtp service for routes that need one.
 */
import { createHash } from 'node:crypto';
import type { Bundle, BundleFile, MasterService } from '../../src/deploy/index.js';

export interface Route {
  /** Sender domain, e.g. a.test. */
  domain: string;
  /** Bracketed nexthop `[127.0.0.1]:PORT`. */
  nexthop: string;
  user: string;
  password: string;
  /** Deliver through the rp_smtps service (TLS from the first byte). */
  implicitTls?: boolean;
}

export interface BundleExtras {
  mainCf?: Record<string, string>;
  masterCf?: MasterService[];
  files?: Record<string, BundleFile>;
  /** Replaces the generated sasl_passwd content. */
  saslPasswd?: string;
}

const map = (lines: string[]): string => lines.map((l) => `${l}\n`).join('');

export function service(name: string, command: string, params: Record<string, string>, wakeup = '-'): MasterService {
  return {
    name,
    type: 'unix',
    private: '-',
    unpriv: '-',
    chroot: 'n',
    wakeup,
    maxproc: '-',
    command,
    options: params,
    args: Object.entries(params).flatMap(([k, v]) => ['-o', `${k}=${v}`]),
  };
}

export function buildBundle(routes: Route[], extras: BundleExtras = {}): Bundle {
  const hosts = [...new Set(routes.map((r) => r.nexthop))].sort();
  const implicit = routes.filter((r) => r.implicitTls === true);
  const files: Record<string, BundleFile> = {
    sender_relay: {
      content: map(routes.map((r) => `@${r.domain} ${r.nexthop}`)),
      mode: 0o644,
      secret: false,
      mapType: 'hash',
    },
    sasl_passwd: {
      content: extras.saslPasswd ?? map(routes.map((r) => `@${r.domain} ${r.user}:${r.password}`)),
      mode: 0o600,
      secret: true,
      mapType: 'hash',
    },
    tls_policy: { content: map(hosts.map((h) => `${h} encrypt`)), mode: 0o644, secret: false, mapType: 'hash' },
  };
  const mainCf: Record<string, string> = {
    sender_dependent_relayhost_maps: 'hash:{{dir}}/sender_relay',
    smtp_sasl_password_maps: 'hash:{{dir}}/sasl_passwd',
    smtp_tls_policy_maps: 'hash:{{dir}}/tls_policy',
  };
  const masterCf: MasterService[] = [];
  if (implicit.length > 0) {
    files.sender_transport = {
      content: map(implicit.map((r) => `@${r.domain} rp_smtps:`)),
      mode: 0o644,
      secret: false,
      mapType: 'hash',
    };
    mainCf.sender_dependent_default_transport_maps = 'hash:{{dir}}/sender_transport';
    masterCf.push(
      service('rp_smtps', 'smtp', {
        smtp_tls_wrappermode: 'yes',
        smtp_tls_security_level: 'encrypt',
        syslog_name: 'postfix-rp/rp_smtps',
      }),
    );
  }
  Object.assign(files, extras.files ?? {});
  Object.assign(mainCf, extras.mainCf ?? {});
  masterCf.push(...(extras.masterCf ?? []));
  const body = { files, mainCf, masterCf };
  const version = createHash('sha256').update(JSON.stringify(body)).digest('hex');
  return { version, ...body, warnings: [], quarantine: [] };
}
