import { defineConfig } from 'vitest/config';

/**
 * The lab part: test files that start daemons (real Postfix instances, sshd, dnsmasq) and drive
 * mail through them. Everything else is the unit part (PostgreSQL, node and sh only; a few checks
 * run postmap or pflogsumm when installed). test/lab/requirements.test.ts keeps this list complete.
 */
export const LAB_FILES = [
  'test/lab/lab.test.ts',
  'test/e2e/**/*.test.ts',
  'test/ssh/connection-pool.test.ts',
  'test/deploy/node-deployer.test.ts',
  'test/deploy/restart.test.ts',
  'test/deploy/apply-config.test.ts',
  'test/deploy/node-read.test.ts',
  'test/deploy/slow-login.test.ts',
  'test/deploy/deploy-user.test.ts',
  'test/deploy/delta-release.test.ts',
  'test/deploy/perl-file-work.test.ts',
  'test/deploy/config-check-ahead.test.ts',
  'test/deploy/sync-under-change.test.ts',
  'test/deploy/sync-worker.test.ts',
  'test/postfix/postfix-integration.test.ts',
  'test/postfix/differential.test.ts',
  'test/dns/resolver.test.ts',
  'test/dns/verify.test.ts',
  'test/dns/dmarc-org.test.ts',
  'test/dns/spf-pyspf.test.ts',
  'test/api/provider-templates.test.ts',
  'test/api/domain-verification.test.ts',
  'test/api/domain-claims.test.ts',
  'test/api/relay-switch.test.ts',
];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    hookTimeout: 120_000,
    // On CI every skipped end-to-end test is a failure: see test/lab/requirements.ts and .ci/run.
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: LAB_FILES, testTimeout: 30_000 },
      },
      {
        extends: true,
        // Lab waits end on events; a lab test's timeout only stops a hang (= HANG_GUARD_MS,
        // test/lab/util.ts). At a load average of 17 the 1,000-message test took over 240 s.
        test: { name: 'lab', include: LAB_FILES, testTimeout: 900_000 },
      },
    ],
  },
});
