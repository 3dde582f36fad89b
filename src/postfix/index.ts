/**
 * Relayplane's Postfix compiler: rows in (Snapshot), config bundle out (Bundle), plus the route
 * explanation computed from the same resolution. Pure: no I/O, no clock.
 */
export type * from './snapshot.js';
export { DEFAULT_SETTINGS } from './snapshot.js';
export { CompileError, type CompileProblem, type ProblemCode, type ResourceType } from './errors.js';
export {
  isMapSafeKey,
  isMapSafeValue,
  isValidSaslUsername,
  isValidSaslSecret,
  isValidDomainName,
  isValidDestinationPattern,
  isValidRelayHost,
  isValidPort,
  isPostfixTime,
  formatNexthop,
} from './map-encoding.js';
export { compile, compileStrict, compilePlan, tablePath, serviceLimitParams } from './compiler.js';
export { createIncrementalCompiler, type IncrementalCompiler, type CompileMode } from './incremental.js';
export {
  DIR_PLACEHOLDER,
  SERVICE_PREFIX,
  renderBundle,
  masterCfLine,
  isSafeReleaseDir,
  chunkedFile,
  chunkedDigest,
  chunksOf,
  knownDigest,
  maskedChunksOf,
  withoutMaskedText,
  type Bundle,
  type BundleFile,
  type MasterService,
} from './bundle.js';
export { planRoutes, isRoutePlan, type RoutePlan, type DomainRoute, type ServicePlan, type SaslMode } from './plan.js';
export {
  resolveSenderDomain,
  effectiveLimits,
  relayTlsPolicy,
  type RelayTlsPolicy,
  type SenderDomainResolution,
  type Hop,
  type EffectiveLimits,
  type UnroutedCode,
} from './resolve.js';
export {
  explainRoute,
  matchDestinationPolicy,
  type Explanation,
  type MatchedEntry,
  type NexthopCredential,
} from './explain.js';
export { TABLE, UNROUTED_TRANSPORT } from './tables.js';
export { planWithQuarantine, problemsOf, type QuarantinedUnit, type QuarantineTreatment } from './quarantine.js';
