/**
 * How a sender domain and a service are written in the sender-dependent tables. Its own module:
 * plan.ts puts both into every route once, tables.ts and explain.ts quote them.
 */
import { lookupDomain } from './address.js';

/**
 * `@domain`: Postfix looks up the full sender address, then `@domain` (mail_addr_find), with the
 * domain in the form address.ts gives every envelope sender.
 */
export function senderKey(domain: string): string {
  return `@${lookupDomain(domain)}`;
}

/** `service:` with an EMPTY nexthop, so the sender-dependent relayhost stays in charge. */
export function transportValue(service: string): string {
  return `${service}:`;
}
