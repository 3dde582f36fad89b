import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier/flat';

/**
 * The floors of src/ (ARCHITECTURE.md): an import may only point down. Each entry names the
 * folders a floor must not import from, as regular expressions on the import's path; the message
 * says why. test/lint/layers.test.ts shows that each one fails the lint.
 */
const below = (dirs) => `(^|/)(${dirs.join('|')})/`;
const layers = [
  {
    files: ['src/routes/**/*.ts'],
    forbid: [
      {
        regex: below(['repositories', 'db']),
        message: 'routes call services; only repositories (and db/) touch the database',
      },
      {
        regex: '^@prisma/client|(^|/)generated/prisma/',
        message: 'routes call services; only repositories (and db/) touch Prisma',
      },
    ],
  },
  {
    files: ['src/services/**/*.ts'],
    forbid: [
      { regex: below(['routes', 'plugins']), message: 'services are called by routes and plugins, never the reverse' },
      {
        regex: below(['jobs']),
        message: 'jobs use services, never the reverse: a service is a use case the API calls',
      },
    ],
  },
  {
    files: ['src/jobs/**/*.ts'],
    forbid: [
      {
        regex: below(['routes', 'plugins']),
        message: 'jobs are started by their plugin; they never import routes or plugins',
      },
    ],
  },
  {
    files: ['src/config-engine/**/*.ts'],
    ignores: ['src/config-engine/thread.worker.ts'],
    forbid: [
      {
        regex: below(['services', 'routes', 'plugins', 'jobs']),
        message:
          'config-engine/ is used by services and jobs; only its thread entry (thread.worker.ts) builds services',
      },
    ],
  },
  {
    files: ['src/config-engine/thread.worker.ts'],
    forbid: [
      {
        regex: below(['routes', 'plugins', 'jobs']),
        message: 'config-engine/ is used by services and jobs; it never imports routes, plugins or jobs',
      },
    ],
  },
  {
    files: ['src/repositories/**/*.ts'],
    forbid: [
      {
        regex: below(['services', 'routes', 'plugins', 'jobs', 'deploy', 'usage', 'ssh', 'dns', 'config-engine']),
        message: 'repositories are the floor under services and jobs: they import db/, lib/ and the Prisma client only',
      },
    ],
  },
  {
    files: ['src/postfix/**/*.ts'],
    forbid: [
      { regex: '^(?!node:|\\./)', message: 'the compiler is pure: Node built-ins (node:) and its own files only' },
    ],
  },
  {
    files: ['src/deploy/**/*.ts', 'src/dns/**/*.ts'],
    forbid: [
      {
        regex: below(['services', 'routes', 'plugins', 'repositories', 'jobs']),
        message: 'deploy/ and dns/ are used by services and jobs; they never import them',
      },
    ],
  },
  {
    files: ['src/usage/**/*.ts'],
    forbid: [
      {
        regex: below(['services', 'routes', 'plugins', 'repositories', 'jobs']),
        message: 'usage/ is used by services and jobs; it never imports them',
      },
      { regex: below(['deploy']), message: 'usage/ reaches nodes through ../ssh/, not through deploy/' },
    ],
  },
  {
    files: ['src/ssh/**/*.ts'],
    forbid: [
      {
        regex: below(['services', 'routes', 'plugins', 'repositories', 'jobs', 'deploy', 'usage']),
        message: 'ssh/ is the bottom floor of the node path: deploy/ and usage/ import it, never the reverse',
      },
    ],
  },
];

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'node_modules/',
      'src/generated/',
      'coverage/',
      'packages/*/dist/',
      'packages/*/node_modules/',
      'packages/*/src/generated/',
      'test/lint/fixtures/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        fetch: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      // Refusing control characters (map injection) is exactly what some of our regexes are for.
      'no-control-regex': 'off',
    },
  },
  ...layers.map(({ files, ignores, forbid }) => ({
    files,
    ...(ignores ? { ignores } : {}),
    rules: { 'no-restricted-imports': ['error', { patterns: forbid }] },
  })),
  // Last: turns off the stylistic rules Prettier (npm run format) owns.
  prettier,
);
