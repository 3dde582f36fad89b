/**
 * Forward-confirmed reverse DNS of a node's HELO name: its A/AAAA addresses, and each address's
 * PTR pointing back at it (receivers' first reputation check).
 */
import { normalizeName, type DnsResolver } from './resolver.js';

export interface FcrdnsCheck {
  heloName: string;
  addresses: string[];
  ptr: Record<string, string[]>;
  ok: boolean;
  problems: string[];
}

export async function checkForwardConfirmedRdns(heloName: string, resolver: DnsResolver): Promise<FcrdnsCheck> {
  const name = normalizeName(heloName);
  const forward = await resolver.addresses(name);
  if (forward.kind !== 'found') {
    const why = forward.kind === 'error' ? `lookup failed: ${forward.reason}` : `no A/AAAA record (${forward.reason})`;
    return { heloName: name, addresses: [], ptr: {}, ok: false, problems: [`the HELO name ${name} has no address: ${why}`] };
  }
  const ptr: Record<string, string[]> = {};
  const problems: string[] = [];
  for (const address of forward.values) {
    const reverse = await resolver.ptr(address);
    ptr[address] = reverse.kind === 'found' ? reverse.values.map(normalizeName) : [];
    if (reverse.kind === 'error') problems.push(`PTR lookup of ${address} failed: ${reverse.reason}`);
    else if (reverse.kind === 'absent') problems.push(`${address} has no PTR record`);
    else if (!ptr[address]!.includes(name)) problems.push(`PTR of ${address} is ${ptr[address]!.join(', ')}, not ${name}`);
  }
  return { heloName: name, addresses: forward.values, ptr, ok: problems.length === 0, problems };
}
