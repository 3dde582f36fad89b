import { Command, CommanderError, Option } from 'commander';
import { pino } from 'pino';
import { ConfigError, loadConfig } from './config.js';
import { openDatabase } from './db/database.js';
import { applyMigrations } from './db/migrate.js';
import { createPrismaClient } from './db/prisma.js';
import { loggerOptions } from './lib/logger.js';
import { serve } from './server.js';
import { SCOPES, type Scope } from './services/principal.js';
import { createServices } from './services/index.js';

/** Logs of one-shot commands go to stderr so that stdout stays parseable (`--json`). */
function commandLogger(level: string) {
  return pino(loggerOptions(level === 'info' ? 'warn' : level), pino.destination(2));
}

/** Opens the database like `serve` does (embedded or external), runs `work`, then releases everything. */
async function withServices<T>(work: (services: ReturnType<typeof createServices>) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const logger = commandLogger(config.logLevel);
  const database = await openDatabase(config, logger);
  const prisma = createPrismaClient(database.config.databaseUrl, { poolSize: 2 });
  try {
    await applyMigrations({ databaseUrl: database.config.databaseUrl, logger });
    const services = createServices({
      prisma,
      tokenTtlSeconds: database.config.tokenTtlSeconds,
      masterKey: database.config.masterKey,
      configEngine: { execution: 'worker-thread', databaseUrl: database.config.databaseUrl },
      signToken: () => {
        throw new Error('the CLI does not issue tokens');
      },
    });
    try {
      return await work(services);
    } finally {
      await services.config.close();
    }
  } finally {
    await prisma.$disconnect();
    await database.close();
  }
}

function print(value: unknown, json: boolean, text: string) {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

export function buildCli(): Command {
  const program = new Command('relayplane')
    .description('Control plane for multi-tenant SMTP relaying on Postfix')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  program
    .command('serve')
    .description('start the API (on the embedded PostgreSQL unless DATABASE_URL is set)')
    .option('--no-migrate', 'do not apply pending migrations at start')
    .action(async (options: { migrate: boolean }) => {
      const config = loadConfig();
      await serve(config, { migrate: options.migrate && config.migrateOnStart });
    });

  program
    .command('migrate')
    .description('apply pending database migrations and exit')
    .action(async () => {
      const config = loadConfig();
      const logger = commandLogger(config.logLevel);
      const database = await openDatabase(config, logger);
      try {
        const { applied } = await applyMigrations({ databaseUrl: database.config.databaseUrl, logger });
        process.stdout.write(
          applied.length === 0 ? 'Database schema is up to date.\n' : `Applied: ${applied.join(', ')}\n`,
        );
      } finally {
        await database.close();
      }
    });

  const keys = program.command('keys').description('manage API keys');
  keys
    .command('create')
    .description('create an API key and print it once')
    .option('--admin', 'an admin key (every scope)')
    .addOption(new Option('--scope <scope...>', 'scopes of the key').choices([...SCOPES]))
    .option('--tenant <tenantId>', 'bind the key to one tenant')
    .option('--name <name>', 'a label for the key', 'cli')
    .option('--expires-at <iso-time>', 'expiry (ISO 8601)')
    .option('--json', 'print JSON')
    .action(
      async (options: {
        admin?: boolean;
        scope?: Scope[];
        tenant?: string;
        name: string;
        expiresAt?: string;
        json?: boolean;
      }) => {
        const scopes: Scope[] = options.admin ? ['admin'] : (options.scope ?? []);
        if (scopes.length === 0) throw new CliError('say which key to create: --admin or --scope <scope...>');
        if (options.expiresAt !== undefined && Number.isNaN(Date.parse(options.expiresAt))) {
          throw new CliError(`--expires-at is not an ISO 8601 time: ${options.expiresAt}`);
        }
        const created = await withServices((services) =>
          services.apiKeys.create(null, {
            name: options.name,
            scopes,
            tenantId: options.tenant,
            expiresAt: options.expiresAt,
          }),
        );
        print(
          created,
          options.json === true,
          `API key ${created.id} (${created.scopes.join(' ')}), shown once:\n${created.key}`,
        );
      },
    );
  keys
    .command('list')
    .description('list API keys (never their secrets)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const all = await withServices((services) => services.apiKeys.listAll());
      const lines = all.map(
        (key) =>
          `${key.id}  ${key.status.padEnd(7)}  ${key.scopes.join(' ').padEnd(10)}  ${key.tenantId ?? '-'}  ${key.name}`,
      );
      print(all, options.json === true, lines.length === 0 ? 'No API keys.' : lines.join('\n'));
    });
  keys
    .command('revoke')
    .description('revoke an API key; tokens issued from it stop working')
    .argument('<keyId>', 'the key id')
    .action(async (keyId: string) => {
      await withServices((services) => services.apiKeys.revoke(null, keyId));
      process.stdout.write(`Revoked ${keyId}.\n`);
    });
  const credentials = program.command('credentials').description('manage relay credentials (admin)');
  credentials
    .command('rotate')
    .description('store a new SASL credential for a relay (optionally one sender domain) and make it the active one')
    .requiredOption('--relay <relayId>', 'the relay')
    .option('--domain <domainId>', 'scope it to one sender domain')
    .requiredOption('--username <username>', 'the SASL username')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      '\nThe secret is read from standard input (never from the command line, where other users could see it):\n  printf %s "$SECRET" | relayplane credentials rotate --relay … --username …',
    )
    .action(async (options: { relay: string; domain?: string; username: string; json?: boolean }) => {
      const secret = (await readStdin()).replace(/\r?\n$/, '');
      if (secret === '') throw new CliError('no secret on standard input: pipe it in (see --help)');
      const result = await withServices((services) =>
        services.credentialRotation.rotate(CLI_CONTEXT, options.relay, {
          username: options.username,
          secret,
          ...(options.domain === undefined ? {} : { domainId: options.domain }),
        }),
      );
      print(
        result,
        options.json === true,
        `Credential ${result.id} (${result.username}, fingerprint ${result.fingerprint}) is now active.`,
      );
    });
  credentials
    .command('activate')
    .description('make a staged credential the active one of its scope')
    .argument('<credentialId>', 'the credential')
    .action(async (credentialId: string) => {
      const result = await withServices((services) => services.credentialRotation.activate(CLI_CONTEXT, credentialId));
      process.stdout.write(`Credential ${result.id} (${result.username}) is now active.\n`);
    });
  return program;
}

/** The shell user acts with the machine owner's authority; the audit log records the actor as `cli`. */
const CLI_CONTEXT = { actor: { keyId: 'cli', scopes: ['admin' as const], tenantId: null }, requestId: 'cli' };

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** An error whose message is the whole story for the user: printed as one line. */
export class CliError extends Error {}

export async function runCli(argv: string[]): Promise<number> {
  try {
    await buildCli().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Commander already printed its message (or help); keep its exit code.
      return error.exitCode;
    }
    const message = error instanceof Error ? error.message : String(error);
    const known =
      error instanceof ConfigError || error instanceof CliError || (error as { status?: number }).status !== undefined;
    process.stderr.write(`relayplane: ${known ? message : `error: ${message}`}\n`);
    return 1;
  }
}
