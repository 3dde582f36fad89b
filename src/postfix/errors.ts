/**
 * The compiler refuses, it never guesses: anything Postfix cannot express exactly (or input that
 * could inject into a map) becomes a CompileProblem, and compile() throws them all at once.
 */

export type ResourceType = 'settings' | 'tenant' | 'domain' | 'relay' | 'credential' | 'destinationPolicy';

export type ProblemCode =
  /** A Settings value is missing, out of range or not a Postfix time. */
  | 'invalid_settings'
  /** Two rows of one kind share an id. */
  | 'duplicate_id'
  /** A domain name or destination pattern that is not a safe lower-case ASCII DNS name. */
  | 'invalid_name'
  /** Two domains (or two destination policies) with the same name/pattern. */
  | 'duplicate_name'
  /** A relay host that is not a lower-case DNS name or IP literal, or a bad port. */
  | 'invalid_host'
  /** An enum field with an unknown value. */
  | 'invalid_value'
  /** An id that points at nothing. */
  | 'dangling_reference'
  /** A tenant-owned relay used by (or holding a credential for) another tenant's domain. */
  | 'relay_not_allowed'
  /** route/relayId/fallbackRelayId do not fit together. */
  | 'route_inconsistent'
  /** Primary and fallback differ in implicit TLS: smtp_tls_wrappermode is per service, not per nexthop. */
  | 'fallback_tls_mismatch'
  /** A relay on an IP literal of a family inetProtocols turns off: Postfix bounces its mail. */
  | 'relay_unreachable'
  /** Opportunistic TLS with verify: level `may` never checks certificates. */
  | 'tls_opportunistic_verify'
  /** A limit that is not an integer in range. */
  | 'invalid_limits'
  /** Limits Postfix cannot honour together (rate delay + concurrency, recipient limit 1 + others). */
  | 'limits_conflict'
  /** Two active credentials for the same (relay, domain) scope. */
  | 'duplicate_credential'
  /** A SASL username or secret Postfix cannot carry byte for byte. */
  | 'invalid_credential'
  /** A generated service name collides (hash prefix collision; practically never). */
  | 'service_name_collision'
  /** Internal double-check: an emitted line failed the map-safety checks. A bug, never input. */
  | 'unsafe_output';

export interface CompileProblem {
  code: ProblemCode;
  message: string;
  resourceType: ResourceType;
  resourceId: string | null;
}

export class CompileError extends Error {
  readonly problems: readonly CompileProblem[];

  constructor(problems: CompileProblem[]) {
    const first = problems[0]?.message ?? 'unknown problem';
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    super(`cannot compile the Postfix configuration: ${first}${more}`);
    this.name = 'CompileError';
    this.problems = problems;
  }
}

/** Collects problems while validating so that one compile reports all of them. */
export class ProblemList {
  readonly items: CompileProblem[] = [];

  add(code: ProblemCode, resourceType: ResourceType, resourceId: string | null, message: string): void {
    this.items.push({ code, resourceType, resourceId, message });
  }

  throwIfAny(): void {
    if (this.items.length > 0) throw new CompileError(sortProblems(this.items));
  }
}

/** Deterministic order, so the same bad input always produces the same error. */
function sortProblems(problems: CompileProblem[]): CompileProblem[] {
  const key = (p: CompileProblem) => `${p.resourceType}\u0000${p.resourceId ?? ''}\u0000${p.code}\u0000${p.message}`;
  return [...problems].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}
