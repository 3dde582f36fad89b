import { randomBytes } from 'node:crypto';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createPrismaClient } from '../../src/db/prisma.js';

// Relayplane as deployed: the full app (auth, validation, serialization, metrics) on its database;
// the token rate limits come from the environment, as `relayplane serve` reads them.
const { tokenRateLimit, dnsServers } = loadConfig(process.env);
const prisma = createPrismaClient(process.env.BENCH_DATABASE_URL!, { poolSize: 10 });
const app = await buildApp({
  config: {
    jwtSecret: randomBytes(32).toString('hex'),
    masterKey: randomBytes(32),
    tokenTtlSeconds: 3600,
    logLevel: 'warn',
  },
  prisma,
  configEngine: { execution: 'worker-thread', databaseUrl: process.env.BENCH_DATABASE_URL! },
  tokenRateLimit,
  // Nothing leaves the machine: domain DNS checks go to RELAYPLANE_DNS_SERVERS, else a loopback port nobody answers on.
  dnsServers: dnsServers ?? ['127.0.0.1:9'],
});
const key = await app.services.apiKeys.create(null, { name: 'bench', scopes: ['admin'] });
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`KEY ${key.key}\nLISTENING ${address}\n`);
process.on('SIGTERM', async () => {
  await app.close();
  await prisma.$disconnect();
  process.exit(0);
});
