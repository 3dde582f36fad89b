/**
 * A private view of name resolution for a lab node, so it can deliver "directly" (to the recipient
 * domain's address, port 25) without any DNS query leaving the machine. The node's Postfix master
 * and sshd run in their own mount namespace (`unshare -m --propagation private`) in which
 *   /etc/hosts          lists localhost and the given names → loopback addresses,
 *   /etc/nsswitch.conf  is the machine's with `hosts: files` (getaddrinfo never asks DNS),
 *   /etc/resolv.conf    names a loopback nameserver (a direct res_query cannot leave either).
 * With `smtp_dns_support_level = disabled` Postfix's smtp client resolves a nexthop domain with
 * getaddrinfo, so `c@plain.dtest` goes to port 25 of the address listed for plain.dtest.
 * Processes started from inside (the deployer's `postfix start` over SSH) inherit the namespace.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const LOOPBACK_V4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Binds the three files over /etc, then execs the command; `&&`: no mount, no command. */
const ENTER_SCRIPT =
  'd=$1; shift; mount --bind "$d/hosts" /etc/hosts && mount --bind "$d/nsswitch.conf" /etc/nsswitch.conf && ' +
  'mount --bind "$d/resolv.conf" /etc/resolv.conf && exec "$@"';

/** Throws unless every name is a lower-case host name and every address an IPv4 loopback one. */
export function checkPrivateHosts(hosts: Record<string, string>): void {
  for (const [name, address] of Object.entries(hosts)) {
    if (!HOST_NAME.test(name)) throw new Error(`privateHosts: ${JSON.stringify(name)} is not a lower-case host name`);
    const octets = LOOPBACK_V4.exec(address)?.slice(1).map(Number);
    if (octets === undefined || octets.some((o) => o > 255)) {
      throw new Error(`privateHosts: ${name} must map to an IPv4 loopback address (127.x.y.z), got ${address}`);
    }
  }
}

/** Writes hosts, nsswitch.conf and resolv.conf for the namespace into dir. */
export async function writePrivateHostsFiles(dir: string, hosts: Record<string, string>): Promise<void> {
  checkPrivateHosts(hosts);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const lines = ['127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback'];
  for (const [name, address] of Object.entries(hosts)) lines.push(`${address} ${name}`);
  await writeFile(path.join(dir, 'hosts'), `${lines.join('\n')}\n`, { mode: 0o644 });
  const nsswitch = await readFile('/etc/nsswitch.conf', 'utf8').catch(() => 'passwd: files\ngroup: files\n');
  const kept = nsswitch.split('\n').filter((line) => !/^\s*hosts\s*:/.test(line));
  await writeFile(path.join(dir, 'nsswitch.conf'), `${kept.join('\n').trimEnd()}\nhosts: files\n`, { mode: 0o644 });
  // Nothing in the namespace should query DNS at all; were something to, it stays on loopback.
  await writeFile(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions attempts:1 timeout:1\n', {
    mode: 0o644,
  });
}

/** [cmd, args] that run `cmd args` in a new mount namespace seeing the files in dir. */
export function inPrivateHosts(dir: string, cmd: string, args: string[]): [string, string[]] {
  return ['unshare', ['-m', '--propagation', 'private', '/bin/sh', '-c', ENTER_SCRIPT, 'sh', dir, cmd, ...args]];
}

/** The mount namespace of a process (`mnt:[4026532173]`); undefined when it is gone. */
export function mountNamespace(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}

/** Throws unless the process runs in another mount namespace than this one and sees dir's hosts file. */
export function assertInPrivateHosts(pid: number, dir: string, what: string): void {
  const theirs = mountNamespace(pid);
  if (theirs === undefined || theirs === mountNamespace('self')) {
    throw new Error(`${what} (pid ${pid}) does not run in a private mount namespace`);
  }
  let seen = '';
  try {
    seen = readFileSync(`/proc/${pid}/root/etc/hosts`, 'utf8');
  } catch {
    /* compared below */
  }
  if (seen !== readFileSync(path.join(dir, 'hosts'), 'utf8')) {
    throw new Error(`${what} (pid ${pid}) does not see the private /etc/hosts of ${dir}`);
  }
}

/**
 * [] when this machine lets the tests give a process its own /etc/hosts (a mount namespace and a
 * bind mount over a file in /etc, which needs root or CAP_SYS_ADMIN); else what is missing.
 */
export function missingPrivateHosts(): string[] {
  const probe = spawnSync(
    'unshare',
    ['-m', '--propagation', 'private', '/bin/sh', '-c', 'mount --bind /etc/hosts /etc/hosts'],
    { encoding: 'utf8', timeout: 10_000 },
  );
  if (probe.status === 0) return [];
  const why = (probe.stderr ?? '').trim() || probe.error?.message || `exit ${probe.status}`;
  return [`a private mount namespace for a node's /etc/hosts (unshare -m + mount --bind: ${why})`];
}
