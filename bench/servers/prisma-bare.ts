import Fastify from 'fastify';
import { createPrismaClient } from '../../src/db/prisma.js';

// A reference point between the two: bare Fastify, the same read through Prisma 7 (adapter-pg), no auth.
const prisma = createPrismaClient(process.env.BENCH_DATABASE_URL!, { poolSize: 10 });
const app = Fastify({ logger: false });
app.get<{ Params: { id: string } }>('/tenants/:id', async (request, reply) => {
  const tenant = await prisma.tenant.findUnique({ where: { id: request.params.id } });
  return tenant ?? reply.status(404).send({ status: 404 });
});
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`LISTENING ${address}\n`);
process.on('SIGTERM', async () => {
  await app.close();
  await prisma.$disconnect();
  process.exit(0);
});
