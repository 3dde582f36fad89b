import { PrismaPg } from '@prisma/adapter-pg';
import { Prisma, PrismaClient } from '../generated/prisma/client.js';

export type { PrismaClient } from '../generated/prisma/client.js';
export { Prisma } from '../generated/prisma/client.js';

/** The client every repository receives, or a transaction client inside `$transaction`. */
export type Db = Omit<PrismaClient, '$connect' | '$disconnect' | '$on' | '$transaction' | '$extends'>;

/**
 * Builds a Prisma client over node-postgres. A `?schema=` parameter in the URL selects the
 * PostgreSQL schema, as with Prisma's own engines.
 */
export function createPrismaClient(databaseUrl: string, options: { poolSize?: number } = {}): PrismaClient {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema') ?? undefined;
  url.searchParams.delete('schema');
  const adapter = new PrismaPg(
    { connectionString: url.toString(), max: options.poolSize ?? 10 },
    schema === undefined ? undefined : { schema },
  );
  return new PrismaClient({ adapter });
}

/** Is this a unique-constraint violation (Prisma P2002), optionally on a given column? */
export function isUniqueViolation(error: unknown, column?: string): boolean {
  if (!(error instanceof Prisma.PrismaClientKnownRequestError) || error.code !== 'P2002') return false;
  if (column === undefined) return true;
  return JSON.stringify(error.meta ?? {}).includes(column) || error.message.includes(column);
}
