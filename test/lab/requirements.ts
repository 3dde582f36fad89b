/**
 * What the end-to-end lab (real Postfix + sshd on loopback) needs on the machine. Lab tests use
 * `describe.skipIf(!labAvailable().ok)`; `missing` says why they were skipped.
 */
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/** The one command that installs everything the lab needs (Debian/Ubuntu). */
export const LAB_INSTALL_COMMAND =
  'sudo apt-get install -y postfix openssh-server swaks libnet-ssleay-perl libio-socket-ssl-perl libsasl2-modules';

export interface LabAvailability {
  ok: boolean;
  /** Human-readable list of what is missing (binaries, root, SASL modules). */
  missing: string[];
}

const SEARCH_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter((d) => d !== ''), ...SEARCH_PATH];
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

function saslPlainModule(): boolean {
  for (const base of ['/usr/lib', '/usr/lib64']) {
    const candidates = [path.join(base, 'sasl2')];
    try {
      for (const e of readdirSync(base)) candidates.push(path.join(base, e, 'sasl2'));
    } catch {
      /* no dir */
    }
    for (const dir of candidates) {
      try {
        if (readdirSync(dir).some((f) => f.startsWith('libplain.so'))) return true;
      } catch {
        /* no dir */
      }
    }
  }
  return false;
}

/**
 * True when the lab must run (CI sets RELAYPLANE_REQUIRE_LAB=1, see .ci/run): lab test files then
 * fail instead of skipping when labAvailable() is not ok.
 */
export function labRequired(): boolean {
  return process.env.RELAYPLANE_REQUIRE_LAB === '1';
}

let cached: LabAvailability | undefined;

export function labAvailable(): LabAvailability {
  if (cached !== undefined) return cached;
  const missing: string[] = [];
  for (const bin of ['postfix', 'postmap', 'postconf', 'postqueue', 'sshd', 'ssh-keygen', 'swaks', 'openssl']) {
    if (findBinary(bin) === undefined) missing.push(`binary ${bin}`);
  }
  if (process.platform !== 'linux') missing.push('Linux (uses /proc)');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) missing.push('root (Postfix instances and sshd run as root)');
  if (!saslPlainModule()) missing.push('Cyrus SASL PLAIN module (libsasl2-modules)');
  if (!existsSync('/etc/postfix/postfix-files')) missing.push('/etc/postfix/postfix-files (postfix package)');
  cached = { ok: missing.length === 0, missing };
  return cached;
}

/**
 * The gate every lab test file opens with: true when the lab can run. When it cannot, CI (which
 * requires the lab) gets a failing test naming what is missing; elsewhere the file is skipped with
 * one warning carrying the install command.
 */
export function labGate(suite: string): boolean {
  const lab = labAvailable();
  if (lab.ok) return true;
  if (labRequired()) {
    describe(`${suite}: lab requirements (RELAYPLANE_REQUIRE_LAB=1)`, () => {
      it('are met', () => {
        expect(lab.missing, `install with: ${LAB_INSTALL_COMMAND}`).toEqual([]);
      });
    });
  } else {
    console.warn(`${suite} skipped, missing: ${lab.missing.join(', ')}. Install: ${LAB_INSTALL_COMMAND}`);
  }
  return false;
}
