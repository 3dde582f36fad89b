/**
 * PostgreSQL ends idle connections on a fast shutdown (the embedded server gets the same Ctrl-C as
 * `relayplane serve`), a restart or a failover. A client whose pool only served direct reads has no
 * listener from Prisma's adapter yet: the pool's 'error' event must not become an uncaught
 * exception (it ended the config engine's thread), and the next query opens a fresh connection.
 */
import pg from 'pg';
import { expect, it } from 'vitest';
import { createPrismaClient, directPool } from '../../src/db/prisma.js';
import { usePrismaDatabase } from '../helpers/database.js';

const db = usePrismaDatabase();

it('survives PostgreSQL ending an idle pooled connection, and reconnects', async () => {
  const prisma = createPrismaClient(db.database.url, { poolSize: 1 });
  try {
    const pool = directPool(prisma)!;
    const { rows } = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const backend = rows[0]!.pid;
    expect(pool.idleCount).toBe(1);

    const removed = new Promise<void>((resolve) => pool.once('remove', () => resolve()));
    const admin = new pg.Client({ connectionString: db.database.url });
    await admin.connect();
    try {
      await admin.query('SELECT pg_terminate_backend($1)', [backend]);
    } finally {
      await admin.end();
    }
    await removed;

    const again = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    expect(again.rows[0]!.pid).not.toBe(backend);
    expect(await prisma.tenant.count()).toBe(0);
  } finally {
    await prisma.$disconnect();
  }
});
