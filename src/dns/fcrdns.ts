/**
 * Forward-confirmed reverse DNS of a node's HELO name: the name's A/AAAA addresses, and each
 * address's PTR naming it again. Receivers check this before anything else about a sender.
 */
import { isIP } from 'node:net';
import { normalizeName, type DnsResolver } from './resolver.js';

export interface FcrdnsCheck {
  heloName: string;
  addresses: string[];
  /** Each address's PTR names, lower case. */
  ptr: Record<string, string[]>;
  ok: boolean;
  problems: string[];
}

export async function checkForwardConfirmedRdns(heloName: string, resolver: DnsResolver): Promise<FcrdnsCheck> {
  const name = normalizeName(heloName);
  const fail = (problem: string): FcrdnsCheck => ({
    heloName: name,
    addresses: [],
    ptr: {},
    ok: false,
    problems: [problem],
  });
  if (isIP(name.replace(/^\[|\]$/g, '')) !== 0) return fail(`the HELO name ${name} is an address, not a name`);
  const forward = await resolver.addresses(name);
  if (forward.kind === 'error') return fail(`DNS lookup of A/AAAA ${name} failed: ${forward.reason}`);
  if (forward.kind === 'absent')
    return fail(`the HELO name ${name} has no address: no A/AAAA record (${forward.reason})`);

  const reverse = await Promise.all(forward.values.map((address) => resolver.ptr(address)));
  const ptr: Record<string, string[]> = {};
  const problems: string[] = [];
  forward.values.forEach((address, i) => {
    const answer = reverse[i]!;
    const names = answer.kind === 'found' ? answer.values.map(normalizeName) : [];
    ptr[address] = names;
    if (answer.kind === 'error') problems.push(`DNS lookup of PTR ${address} failed: ${answer.reason}`);
    else if (answer.kind === 'absent') problems.push(`${address} has no PTR record (${answer.reason})`);
    else if (!names.includes(name)) problems.push(`the PTR of ${address} is ${names.join(', ')}, not ${name}`);
  });
  return { heloName: name, addresses: forward.values, ptr, ok: problems.length === 0, problems };
}
