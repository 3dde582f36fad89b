/**
 * What the tests need on the machine: the end-to-end lab (real Postfix + sshd on loopback) and the
 * tools some tests run (dnsmasq, pflogsumm, postmap…). A file or test opens with
 * `describe.skipIf(!labGate(…))` or `toolGate(…)`: skipped with the reason and the install command
 * printed when something is missing, failing instead when RELAYPLANE_REQUIRE_LAB=1 (CI).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Every Debian/Ubuntu package the suite (and the README's walk-through) uses; .ci/run installs
 * exactly these and the README's install line lists them (test/lab/requirements.test.ts checks both).
 */
export const LAB_PACKAGES = [
  'postfix',
  'openssh-server',
  'openssh-client',
  'swaks',
  'libnet-ssleay-perl',
  'libio-socket-ssl-perl',
  'libsasl2-modules',
  'pflogsumm',
  'time',
  'dnsmasq-base',
  'openssl',
  'ca-certificates',
  'jq',
  'python3-spf',
  'bind9-utils',
  'sudo',
] as const;

/** The one command that installs everything the lab needs (Debian/Ubuntu). */
export const LAB_INSTALL_COMMAND = `sudo apt-get install -y ${LAB_PACKAGES.join(' ')}`;

/** The package each tool a test runs comes from. */
const TOOL_PACKAGES: Record<string, (typeof LAB_PACKAGES)[number]> = {
  postfix: 'postfix',
  postmap: 'postfix',
  postconf: 'postfix',
  postqueue: 'postfix',
  sshd: 'openssh-server',
  ssh: 'openssh-client',
  'ssh-keygen': 'openssh-client',
  'ssh-keyscan': 'openssh-client',
  swaks: 'swaks',
  pflogsumm: 'pflogsumm',
  time: 'time',
  dnsmasq: 'dnsmasq-base',
  openssl: 'openssl',
  jq: 'jq',
  'named-checkzone': 'bind9-utils',
};

export interface LabAvailability {
  ok: boolean;
  /** Human-readable list of what is missing (binaries, root, SASL modules). */
  missing: string[];
}

const SEARCH_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export function findBinary(name: string): string | undefined {
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
  missing.push(
    ...missingTools(['postfix', 'postmap', 'postconf', 'postqueue', 'sshd', 'ssh-keygen', 'swaks', 'openssl']),
  );
  if (process.platform !== 'linux') missing.push('Linux (uses /proc)');
  missing.push(...missingRoot());
  if (!saslPlainModule()) missing.push('Cyrus SASL PLAIN module (libsasl2-modules)');
  if (!existsSync('/etc/postfix/postfix-files')) missing.push('/etc/postfix/postfix-files (postfix package)');
  cached = { ok: missing.length === 0, missing };
  return cached;
}

/** ['root …'] unless the tests run as root on Linux (Postfix instances and sshd run as root). */
export function missingRoot(): string[] {
  return typeof process.getuid === 'function' && process.getuid() === 0
    ? []
    : ['root (Postfix instances and sshd run as root)'];
}

/** `binary x (package p)` for each tool not found. */
export function missingTools(tools: readonly string[]): string[] {
  return tools.filter((t) => findBinary(t) === undefined).map((t) => `binary ${t} (package ${TOOL_PACKAGES[t] ?? t})`);
}

/**
 * Debian's own Python (its python3-* packages install for it): not whatever `python3` a version
 * manager puts first on PATH.
 */
export const DEBIAN_PYTHON = '/usr/bin/python3';

/** `python module m (package p)` for each module Debian's Python cannot import. */
export function missingPythonModules(modules: Record<string, (typeof LAB_PACKAGES)[number]>): string[] {
  return Object.entries(modules)
    .filter(([m]) => spawnSync(DEBIAN_PYTHON, ['-c', `import ${m}`], { stdio: 'ignore' }).status !== 0)
    .map(([m, p]) => `python module ${m} for ${DEBIAN_PYTHON} (package ${p})`);
}

/**
 * Opens a gate on what a suite needs: true when it can run. When it cannot, CI (which requires
 * the lab) gets a failing test naming what is missing; elsewhere one warning says what is missing
 * and the install command, and the caller skips.
 */
export function requirementGate(suite: string, missing: string[]): boolean {
  if (missing.length === 0) return true;
  if (labRequired()) {
    describe(`${suite}: requirements (RELAYPLANE_REQUIRE_LAB=1)`, () => {
      it('are met', () => {
        expect(missing, `install with: ${LAB_INSTALL_COMMAND}`).toEqual([]);
      });
    });
  } else {
    console.warn(`${suite} skipped, missing: ${missing.join(', ')}. Install: ${LAB_INSTALL_COMMAND}`);
  }
  return false;
}

/** The gate of a test or file that runs these tools (no root, no Postfix instance). */
export function toolGate(suite: string, tools: readonly string[]): boolean {
  return requirementGate(suite, missingTools(tools));
}

/**
 * The gate every lab test file opens with: true when the lab (and any extra tools the file runs)
 * is there. See requirementGate() for what happens otherwise.
 */
export function labGate(suite: string, extraTools: readonly string[] = []): boolean {
  return requirementGate(suite, [...labAvailable().missing, ...missingTools(extraTools)]);
}
