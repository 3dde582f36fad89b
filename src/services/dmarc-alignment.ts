/**
 * DMARC passes only through an aligned SPF pass or an aligned DKIM signature. A relay that
 * declares neither an SPF include nor DKIM leaves a domain routed through it nothing Relayplane
 * asks to publish that makes DMARC pass: its mail fails DMARC (and is refused where the policy is
 * `reject`). Verification still succeeds — the relay may sign with a key Relayplane does not model,
 * or the domain may only monitor (`p=none`) — but the records view says so. Pure.
 */
import type { Domain, Relay } from '../generated/prisma/client.js';
import { relayAuthTemplate, relayDkim } from './relay-records.js';

export interface RecordsWarning {
  code: 'no-dmarc-pass';
  message: string;
}

/** A provider template's DKIM records sign the domain's mail as well as a static declaration. */
function templateDkim(relay: Relay): boolean {
  return relayAuthTemplate(relay)?.records.some((r) => r.purpose === 'dkim' && r.required) ?? false;
}

export function alignmentWarnings(
  domain: Pick<Domain, 'name' | 'route'>,
  relays: { field: 'relayId' | 'fallbackRelayId'; relay: Relay | null }[],
): RecordsWarning[] {
  if (domain.route === 'direct') {
    return [
      {
        code: 'no-dmarc-pass',
        message: `${domain.name} is delivered directly: no SPF include or DKIM key is asked for, so its mail passes DMARC only if its own SPF record authorizes the nodes' addresses`,
      },
    ];
  }
  return relays.flatMap(({ field, relay }) =>
    relay === null || relay.spfInclude !== null || relayDkim(relay).length > 0 || templateDkim(relay)
      ? []
      : [
          {
            code: 'no-dmarc-pass' as const,
            message: `the relay of ${field} (${relay.name}) declares neither an SPF include nor DKIM: mail from ${domain.name} sent through it fails DMARC (refused where the policy is p=reject)`,
          },
        ],
  );
}
