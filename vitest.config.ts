import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // On CI every skipped end-to-end test is a failure: see test/lab/requirements.ts and .ci/run.
    reporters: ['default'],
  },
});
