/** DNS for domain onboarding: the records to publish, their checks (SPF, DMARC, DKIM, ownership) and node rDNS. */
export { createDnsResolver, normalizeName, type DnsResolver, type LookupResult, type ResolverOptions } from './resolver.js';
export { DEFAULT_DMARC, OWNERSHIP_LABEL, OWNERSHIP_PREFIX, expectedRecords, splitTxt, type ExpectedRecord, type RecordPurpose, type RelayDnsDeclaration } from './records.js';
export { SPF_LOOKUP_LIMIT, checkSpf, parseSpf, type SpfCheck, type SpfParse, type SpfTerm } from './spf.js';
export { checkDmarc, parseDmarc, type DmarcCheck, type DmarcParse } from './dmarc.js';
export { checkRecords, type RecordCheck } from './verify.js';
export { checkForwardConfirmedRdns, type FcrdnsCheck } from './fcrdns.js';
