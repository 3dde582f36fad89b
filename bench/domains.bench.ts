import { applyMigrations } from '../src/db/migrate.js';
import { machine, recordSection, scratchDatabase, startServer } from './lib.js';

/**
 * Issue 3's benchmark: create 10,000 sender domains through the API (as a panel onboarding in bulk,
 * with bounded concurrency), then list them page by page. Records requests/s and p99.
 */
const DOMAINS = Number(process.env.BENCH_DOMAINS ?? 10_000);
const CONCURRENCY = 16;
const PAGE = 500;

function percentile(sorted: number[], p: number) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timed<T>(samples: number[], work: () => Promise<T>): Promise<T> {
  const start = performance.now();
  const result = await work();
  samples.push(performance.now() - start);
  return result;
}

const database = await scratchDatabase('rp_bench_domains');
try {
  await applyMigrations({ databaseUrl: database.url });
  const server = await startServer('relayplane.ts', { BENCH_DATABASE_URL: database.url });
  const key = /^KEY (\S+)$/m.exec(server.banner)![1]!;
  const json = { 'content-type': 'application/json' };
  const token = (await (
    await fetch(`${server.url}/v1/auth/token`, { method: 'POST', headers: json, body: JSON.stringify({ key }) })
  ).json()) as { access_token: string };
  const headers = { ...json, authorization: `Bearer ${token.access_token}` };
  const post = async (path: string, body: unknown) => {
    const response = await fetch(`${server.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    if (response.status !== 201) throw new Error(`POST ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as { id: string };
  };
  const tenant = await post('/v1/tenants', { name: 'Bulk', slug: 'bulk' });
  const relay = await post('/v1/relays', { name: 'up', host: 'smtp.up.test', port: 587, tls: 'starttls' });

  const createSamples: number[] = [];
  let next = 0;
  const createStart = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < DOMAINS) {
        const index = next++;
        await timed(createSamples, () =>
          post(`/v1/tenants/${tenant.id}/domains`, { name: `d${index}.bulk.example`, relayId: relay.id }),
        );
      }
    }),
  );
  const createSeconds = (performance.now() - createStart) / 1000;

  const listSamples: number[] = [];
  let cursor: string | null = null;
  let listed = 0;
  const listStart = performance.now();
  do {
    const url: string = `${server.url}/v1/tenants/${tenant.id}/domains?limit=${PAGE}${cursor === null ? '' : `&cursor=${cursor}`}`;
    const page = await timed(
      listSamples,
      async () => (await (await fetch(url, { headers })).json()) as { items: unknown[]; next_cursor: string | null },
    );
    listed += page.items.length;
    cursor = page.next_cursor;
  } while (cursor !== null);
  const listSeconds = (performance.now() - listStart) / 1000;
  await server.stop();
  if (listed !== DOMAINS) throw new Error(`listed ${listed} domains, expected ${DOMAINS}`);

  createSamples.sort((a, b) => a - b);
  listSamples.sort((a, b) => a - b);
  const table = [
    '## Creating and listing 10,000 domains (issue 3)',
    '',
    `Command: \`npm run bench -- domains\` (${CONCURRENCY} concurrent clients, pages of ${PAGE}; ${machine()}; ${new Date().toISOString().slice(0, 10)}).`,
    '',
    '| Operation | Requests | Total time | req/s | p50 | p99 |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    `| \`POST /v1/tenants/{id}/domains\` | ${DOMAINS} | ${createSeconds.toFixed(1)} s | ${(DOMAINS / createSeconds).toFixed(0)} | ${percentile(createSamples, 50).toFixed(1)} ms | ${percentile(createSamples, 99).toFixed(1)} ms |`,
    `| \`GET …/domains?limit=${PAGE}\` page by page | ${listSamples.length} | ${listSeconds.toFixed(2)} s | ${(listSamples.length / listSeconds).toFixed(0)} | ${percentile(listSamples, 50).toFixed(1)} ms | ${percentile(listSamples, 99).toFixed(1)} ms |`,
  ].join('\n');
  await recordSection('domains', table);
  process.stdout.write(`${table}\n`);
} finally {
  await database.drop();
}
