import Fastify from 'fastify';
import pg from 'pg';

// The baseline: a bare Fastify route running the same query with node-postgres, no auth, no validation.
const pool = new pg.Pool({ connectionString: process.env.BENCH_DATABASE_URL!, max: 10 });
const app = Fastify({ logger: false });
app.get<{ Params: { id: string } }>('/tenants/:id', async (request, reply) => {
  const result = await pool.query('SELECT * FROM tenants WHERE id = $1', [request.params.id]);
  if (result.rowCount === 0) return reply.status(404).send({ status: 404 });
  return result.rows[0];
});
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`LISTENING ${address}\n`);
process.on('SIGTERM', async () => {
  await app.close();
  await pool.end();
  process.exit(0);
});
