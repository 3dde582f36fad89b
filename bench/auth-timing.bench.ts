import { randomBytes } from 'node:crypto';
import { applyMigrations } from '../src/db/migrate.js';
import { machine, median, percentile, recordSection, scratchDatabase, startServer } from './lib.js';

/**
 * Issue 20's timing benchmark: how long `POST /v1/auth/token` takes to refuse an unknown key id
 * and a known key id with a wrong secret. A difference tells an attacker which ids exist. Goal:
 * medians within 20 % of each other. One request at a time, the two kinds interleaved in a random
 * order per pair, so a change in the machine's speed hits both alike.
 */
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 300);
const WARM_UP = 20;
const GOAL = 0.2;
// Far above the samples sent: the bench measures the exchange, not the limiter's refusals.
const RAISED_LIMIT = '1000000';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const randomId = () => Array.from(randomBytes(20), (byte) => ALPHABET[byte % ALPHABET.length]).join('');
const randomSecret = () => randomBytes(32).toString('base64url');

async function refusalMs(url: string, key: string): Promise<number> {
  const start = performance.now();
  const response = await fetch(`${url}/v1/auth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ key }),
  });
  await response.arrayBuffer();
  const ms = performance.now() - start;
  if (response.status !== 401) throw new Error(`expected 401, got ${response.status}`);
  return ms;
}

const database = await scratchDatabase('rp_bench_auth');
try {
  await applyMigrations({ databaseUrl: database.url });
  const server = await startServer('relayplane.ts', {
    BENCH_DATABASE_URL: database.url,
    RELAYPLANE_TOKEN_RATE_LIMIT_PER_ADDRESS: RAISED_LIMIT,
    RELAYPLANE_TOKEN_RATE_LIMIT_PER_KEY: RAISED_LIMIT,
  });
  const samples = { unknown: [] as number[], wrongSecret: [] as number[] };
  try {
    const knownId = /^KEY rpk_([a-z0-9]{20})_/m.exec(server.banner)![1]!;
    const attempts = {
      unknown: () => refusalMs(server.url, `rpk_${randomId()}_${randomSecret()}`),
      wrongSecret: () => refusalMs(server.url, `rpk_${knownId}_${randomSecret()}`),
    };
    for (let i = 0; i < WARM_UP; i++) {
      await attempts.unknown();
      await attempts.wrongSecret();
    }
    for (let i = 0; i < SAMPLES; i++) {
      const order = Math.random() < 0.5 ? (['unknown', 'wrongSecret'] as const) : (['wrongSecret', 'unknown'] as const);
      for (const kind of order) samples[kind].push(await attempts[kind]());
      if ((i + 1) % 100 === 0) process.stdout.write(`${i + 1}/${SAMPLES} pairs\n`);
    }
  } finally {
    await server.stop();
  }

  const stats = (values: number[]) => ({ median: median(values), p95: percentile(values, 95) });
  const unknown = stats(samples.unknown);
  const wrong = stats(samples.wrongSecret);
  const difference = (a: number, b: number) => Math.abs(a - b) / Math.max(a, b);
  const medianDifference = difference(unknown.median, wrong.median);
  const p95Difference = difference(unknown.p95, wrong.p95);
  const table = [
    '## Token exchange: unknown key id vs wrong secret (issue 20)',
    '',
    `Command: \`npm run bench -- auth-timing\` (${SAMPLES} refused \`POST /v1/auth/token\` of each kind, one request at a time over keep-alive, the two kinds interleaved in random order per pair after ${WARM_UP} of each as a warm-up; every id and secret fresh and random; the rate limits raised for the run through configuration, \`RELAYPLANE_TOKEN_RATE_LIMIT_PER_ADDRESS\` and \`…_PER_KEY\` = ${RAISED_LIMIT}; the server in its own process; ${machine()}; ${new Date().toISOString().slice(0, 10)}).`,
    '',
    '| Key sent | Answer | median | p95 |',
    '| --- | --- | ---: | ---: |',
    `| unknown key id | 401 | ${unknown.median.toFixed(1)} ms | ${unknown.p95.toFixed(1)} ms |`,
    `| known key id, wrong secret | 401 | ${wrong.median.toFixed(1)} ms | ${wrong.p95.toFixed(1)} ms |`,
    '',
    `Difference (of the larger): medians **${(medianDifference * 100).toFixed(1)} %** (goal < ${GOAL * 100} %: ${medianDifference < GOAL ? 'met' : 'NOT met'}), p95 ${(p95Difference * 100).toFixed(1)} %.`,
  ].join('\n');
  await recordSection('auth-timing', table);
  process.stdout.write(`${table}\n`);
} finally {
  await database.drop();
}
