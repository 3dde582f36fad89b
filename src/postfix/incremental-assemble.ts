// The incremental compiler's assembly (incremental.ts): the plan-wide parts and the bundle.
import { assembleBundle, bundleFile, secretBundleFile } from './compiler.js';
import type { ProblemList } from './errors.js';
import { chunkedFile, type Bundle, type BundleFile } from './bundle.js';
import { renderHashMap } from './map-encoding.js';
import { checkServiceLimits } from './plan.js';
import type { RelayTlsPolicy } from './resolve.js';
import { TABLE, serviceSaslEntries, tlsPolicyEntries } from './tables.js';
import { planWarnings } from './warnings.js';
import type { SortedLines } from './incremental-lines.js';
import { needsFull, type State } from './incremental-state.js';

/** The plan-wide parts (TLS policies, services, their limits, warnings) and the bundle: the same files, in the same order, as compilePlan. */
export function assembleFromState(state: State, problems: ProblemList): Bundle {
  const { plan, tables } = state;
  const relayTlsPolicies = new Map<string, RelayTlsPolicy>();
  for (const [nexthop, use] of state.nexthops) {
    if (use.size === 1) for (const policy of use.keys()) relayTlsPolicies.set(nexthop, policy);
  }
  plan.relayTlsPolicies = relayTlsPolicies;
  plan.sharedNexthops = new Set(state.shared);
  plan.services = [...state.services.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  checkServiceLimits(plan.services, plan.routes, problems);
  if (problems.items.length > 0) needsFull();
  plan.warnings = planWarnings(plan);

  const files: Record<string, BundleFile> = {};
  // The per-domain tables as their chunks, joined only if someone reads the text (chunkedFile).
  const chunks = (name: string, lines: SortedLines) => {
    const texts = lines.chunkTexts();
    if (state.digests.get(name)?.source !== texts) state.digests.set(name, { source: texts, digest: lines.digest() });
    return texts;
  };
  const table = { mode: 0o644, secret: false, mapType: 'hash' } as const;
  const file = (name: string, lines: SortedLines) =>
    chunkedFile(chunks(name, lines), table, { sha256: lines.digest() });
  files[TABLE.senderTransport] = file(TABLE.senderTransport, tables.transport);
  files[TABLE.senderService] = file(TABLE.senderService, tables.service);
  files[TABLE.senderRelay] = file(TABLE.senderRelay, tables.relay);
  files[TABLE.saslPasswd] = chunkedFile(
    chunks(TABLE.saslPasswd, tables.sasl),
    { mode: 0o600, secret: true, mapType: 'hash' },
    { masked: tables.saslMasked.chunkTexts(), sha256: tables.sasl.digest() },
  );
  files[TABLE.tlsPolicy] = bundleFile(renderHashMap(tlsPolicyEntries(plan)));
  files[TABLE.senderAccess] = file(TABLE.senderAccess, tables.access);
  for (const service of plan.services) {
    if (service.tlsPolicyMap !== null) files[service.tlsPolicyMap] = bundleFile(renderHashMap(service.tlsPolicies));
    if (service.saslMap === null) continue;
    const sasl = serviceSaslEntries(service);
    files[service.saslMap] = secretBundleFile(renderHashMap(sasl.entries), renderHashMap(sasl.masked));
  }
  state.bundle = assembleBundle(plan, files, problems, state.digests);
  return state.bundle;
}
