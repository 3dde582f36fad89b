/**
 * The DNS records a domain must publish, as the relays of its route declare them (ownership token,
 * SPF, DKIM, return-path, DMARC, template records), and how they are shown: merged with the last
 * observation of each. domain-verification.service.ts checks them and drives the status.
 */
import type { PrismaClient } from '../db/prisma.js';
import {
  expectedRecords,
  relativeName,
  type AuthTemplate,
  type AuthValues,
  type ExpectedRecord,
  type RecordCheck,
} from '../dns/index.js';
import type { Domain, Relay } from '../generated/prisma/client.js';
import type { DomainRepository } from '../repositories/domain.repository.js';
import type { RelayRepository } from '../repositories/relay.repository.js';
import { alignmentWarnings, type RecordsWarning } from './dmarc-alignment.js';
import { relayAuthTemplate, relayDkim, relayReturnPath } from './relay-records.js';

/** A record as shown to clients: what to publish, and how it looked when last checked. */
export type PresentedRecord = ExpectedRecord & {
  /** `host` relative to the domain's zone (`@` for the domain itself). */
  name: string;
  dmarcPolicy?: RecordCheck['dmarcPolicy'];
  warnings?: string[];
  valid: boolean | null;
  observed: string[];
  reason: string | null;
  checkedAt: string | null;
};

export function authValuesOf(domain: Domain): AuthValues {
  const v = domain.authValues;
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as AuthValues) : {};
}

/**
 * Expected records merged with the last observation of the same record (same purpose, host and
 * declared value); the value to publish is the check's advice where it gave one (an SPF record
 * merged into the published one, a DMARC policy no weaker than the published one).
 */
export function presentRecords(
  domain: string,
  expected: ExpectedRecord[],
  last: RecordCheck[] | null,
): PresentedRecord[] {
  return expected.map((record) => {
    const seen = last?.find(
      (c) =>
        c.purpose === record.purpose &&
        c.host === record.host &&
        (c.declared ?? c.value) === record.value &&
        c.type === record.type,
    );
    const { strings: _strings, ...bare } = record;
    const publish =
      seen?.declared === undefined
        ? record
        : { ...bare, value: seen.value, ...(seen.strings === undefined ? {} : { strings: seen.strings }) };
    return {
      ...publish,
      name: relativeName(record.host, domain),
      ...(seen?.dmarcPolicy === undefined ? {} : { dmarcPolicy: seen.dmarcPolicy }),
      ...(seen?.warnings === undefined ? {} : { warnings: seen.warnings }),
      valid: seen?.valid ?? null,
      observed: seen?.observed ?? [],
      reason: seen?.reason ?? (seen === undefined ? 'not checked yet' : null),
      checkedAt: seen?.checkedAt ?? null,
    };
  });
}

interface Deps {
  prisma: PrismaClient;
  domains: DomainRepository;
  relays: RelayRepository;
  /** Suggested as DMARC `rua=mailto:<address>` where a domain's record has none (null: no suggestion). */
  dmarcReportAddress: string | null;
}

export function createDomainRecords(deps: Deps) {
  const { prisma } = deps;

  async function relayOf(id: string | null): Promise<Relay | null> {
    return id === null ? null : deps.relays.findById(prisma, id);
  }

  /** The name above this one its tenant holds (then its ownership record is optional), or null. */
  function coveredBy(domain: Domain): Promise<string | null> {
    return deps.domains.heldParent(prisma, domain.name, domain.tenantId);
  }

  async function expectedFor(domain: Domain, parent: string | null): Promise<ExpectedRecord[]> {
    const declared = (relay: Relay | null) =>
      relay === null
        ? null
        : {
            spfInclude: relay.spfInclude,
            dkim: relayDkim(relay),
            returnPath: relayReturnPath(relay),
            template: relayAuthTemplate(relay),
          };
    const relayed = domain.route === 'relay';
    const records = expectedRecords({
      domain: domain.name,
      verificationToken: domain.verificationToken,
      relay: relayed ? declared(await relayOf(domain.relayId)) : null,
      fallbackRelay: relayed ? declared(await relayOf(domain.fallbackRelayId)) : null,
      dmarcReportAddress: deps.dmarcReportAddress,
      authValues: authValuesOf(domain),
    });
    return parent === null ? records : records.map((r) => (r.purpose === 'ownership' ? { ...r, required: false } : r));
  }

  /** The variables of the templates of the domain's relays (the relay's first where both declare a name). */
  async function templateVariables(domain: Domain): Promise<AuthTemplate['variables']> {
    if (domain.route !== 'relay') return [];
    const relays = [await relayOf(domain.relayId), await relayOf(domain.fallbackRelayId)];
    const all = relays.flatMap((r) => (r === null ? [] : (relayAuthTemplate(r)?.variables ?? [])));
    return all.filter((v, i) => all.findIndex((w) => w.name === v.name) === i);
  }

  async function warningsOf(domain: Domain): Promise<RecordsWarning[]> {
    return alignmentWarnings(domain, [
      { field: 'relayId', relay: await relayOf(domain.relayId) },
      { field: 'fallbackRelayId', relay: await relayOf(domain.fallbackRelayId) },
    ]);
  }

  return { coveredBy, expectedFor, templateVariables, warningsOf };
}
