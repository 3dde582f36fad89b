/** DNS for domain onboarding: the records to publish, their checks (SPF, DMARC, DKIM, ownership) and node rDNS. */
export {
  createDnsResolver,
  normalizeName,
  reverseName,
  type DnsFailure,
  type DnsResolver,
  type LookupResult,
  type ResolverOptions,
} from './resolver.js';
export {
  DEFAULT_DMARC,
  OWNERSHIP_LABEL,
  OWNERSHIP_PREFIX,
  TXT_STRING_MAX_BYTES,
  expectedRecords,
  splitTxt,
  type ExpectedRecord,
  type RecordPurpose,
  type RelayDnsDeclaration,
} from './records.js';
export { SPF_LOOKUP_LIMIT, SPF_VOID_LOOKUP_LIMIT, checkSpf, type SpfCheck } from './spf-check.js';
export { mergeSpf, newSpfRecord, spfWarnings, type SpfMerge } from './spf-merge.js';
export {
  expandDomainSpec,
  formatSpf,
  isSpfRecord,
  parseSpf,
  spfIncludeError,
  type SpfMechanism,
  type SpfModifier,
  type SpfParse,
  type SpfQualifier,
  type SpfTerm,
} from './spf.js';
export {
  checkDmarc,
  dmarcRecord,
  formatDmarc,
  isDmarcRecord,
  organizationalDomain,
  parseDmarc,
  type DmarcCheck,
  type DmarcEffective,
  type DmarcOptions,
  type DmarcParse,
  type DmarcPolicy,
  type DmarcRecord,
} from './dmarc.js';
export { checkRecords, type CheckOptions, type RecordCheck } from './verify.js';
export { checkForwardConfirmedRdns, type FcrdnsCheck } from './fcrdns.js';
export { parseDkimKey, sameDkimKey, type DkimKey, type DkimParse } from './dkim.js';
export { EXPORT_CSV_COLUMNS, EXPORT_TTL, relativeName, toBindZone, toCsv, type ExportRecord } from './zone-export.js';
export {
  templateErrors,
  templateRecords,
  valueError,
  type AuthTemplate,
  type AuthValues,
  type TemplateVariableKind,
} from './auth-template.js';
