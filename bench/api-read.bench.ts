import autocannon from 'autocannon';
import { applyMigrations } from '../src/db/migrate.js';
import { machine, recordSection, scratchDatabase, startServer } from './lib.js';

/**
 * Issue 2's benchmark: an authenticated read (GET /v1/tenants/{id} with a bearer token) against a
 * bare Fastify + pg route doing the same query, in the same run. Goal: ratio ≥ 0.5.
 */
const DURATION = Number(process.env.BENCH_DURATION ?? 10);
const CONNECTIONS = 32;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

type Run = { rps: number; p99: number };
const rounds: Record<'ours' | 'bare' | 'prisma', Run[]> = { ours: [], bare: [], prisma: [] };
/** The run with the median throughput. */
const medianRun = (runs: Run[]): Run => [...runs].sort((a, b) => a.rps - b.rps)[Math.floor(runs.length / 2)]!;

async function load(url: string, headers: Record<string, string> = {}) {
  const result = await autocannon({ url, connections: CONNECTIONS, duration: DURATION, headers });
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${url}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return { rps: result.requests.average, p99: result.latency.p99 };
}

const database = await scratchDatabase('rp_bench_read');
try {
  await applyMigrations({ databaseUrl: database.url });
  const env = { BENCH_DATABASE_URL: database.url };

  const relayplane = await startServer('relayplane.ts', env);
  const bare = await startServer('bare.ts', env);
  const viaPrisma = await startServer('prisma-bare.ts', env);
  try {
    const key = /^KEY (\S+)$/m.exec(relayplane.banner)![1]!;
    const token = (await (
      await fetch(`${relayplane.url}/v1/auth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ key }),
      })
    ).json()) as { access_token: string };
    const headers = { authorization: `Bearer ${token.access_token}`, 'content-type': 'application/json' };
    const tenant = (await (
      await fetch(`${relayplane.url}/v1/tenants`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ name: 'Bench', slug: 'bench' }),
      })
    ).json()) as { id: string };
    const targets = {
      ours: () => load(`${relayplane.url}/v1/tenants/${tenant.id}`, { authorization: headers.authorization }),
      bare: () => load(`${bare.url}/tenants/${tenant.id}`),
      prisma: () => load(`${viaPrisma.url}/tenants/${tenant.id}`),
    };
    // Warm-up of each server, then interleaved rounds: a change in the machine's speed during the
    // run hits every server alike, and the median round of each is kept.
    for (const run of Object.values(targets)) await run();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, run] of Object.entries(targets) as Array<
        [keyof typeof targets, () => ReturnType<typeof load>]
      >) {
        const result = await run();
        rounds[name].push(result);
        process.stdout.write(`round ${round + 1}/${ROUNDS} ${name}: ${result.rps.toFixed(0)} req/s\n`);
      }
    }
  } finally {
    await Promise.all([relayplane.stop(), bare.stop(), viaPrisma.stop()]);
  }
  const ours = medianRun(rounds.ours);
  const baseline = medianRun(rounds.bare);
  const prismaOnly = medianRun(rounds.prisma);
  const roundRatios = rounds.ours.map((r, i) => (r.rps / rounds.bare[i]!.rps).toFixed(2));

  const ratio = ours.rps / baseline.rps;
  const table = [
    '## Authenticated read vs bare Fastify + pg (issue 2)',
    '',
    `Command: \`npm run bench -- api-read\` (${ROUNDS} interleaved rounds of ${DURATION} s per server after a warm-up of each, median round shown; ${CONNECTIONS} connections, autocannon; servers in their own processes; ${machine()}; ${new Date().toISOString().slice(0, 10)}).`,
    '',
    '| Server | Route | req/s | p99 latency |',
    '| --- | --- | ---: | ---: |',
    `| Relayplane (JWT auth, key status check, validation, serialization, metrics) | \`GET /v1/tenants/{id}\` | ${ours.rps.toFixed(0)} | ${ours.p99} ms |`,
    `| bare Fastify + pg, same query | \`GET /tenants/:id\` | ${baseline.rps.toFixed(0)} | ${baseline.p99} ms |`,
    `| reference: bare Fastify + Prisma \`findUnique\`, no auth | \`GET /tenants/:id\` | ${prismaOnly.rps.toFixed(0)} | ${prismaOnly.p99} ms |`,
    '',
    `Ratio Relayplane / bare (medians): **${ratio.toFixed(2)}** (goal ≥ 0.5: ${ratio >= 0.5 ? 'met' : 'NOT met'}); per round: ${roundRatios.join(', ')}. ` +
      `Prisma alone reaches ${(prismaOnly.rps / baseline.rps).toFixed(2)} of bare pg; Relayplane reaches ${(ours.rps / prismaOnly.rps).toFixed(2)} of bare Prisma.`,
  ].join('\n');
  await recordSection('api-read', table);
  process.stdout.write(`${table}\n`);
} finally {
  await database.drop();
}
