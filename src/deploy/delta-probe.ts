/**
 * The validate step's probes of a delta release (delta-release.ts): every key the delta changed is
 * asked in the staged tables, by one `postmap -q` over a `unionmap:` of the changed tables (one
 * Postfix program instead of one per table: each costs ≈ 12 ms of node CPU, BENCHMARKS.md); a
 * table sent and built whole is asked at SENT_TABLE_PROBES of its changed keys.
 * A union answers a key with the values of every table that holds it, in order, joined by commas;
 * the expected answer is built the same way from the bundle's tables, so a table that answers a
 * changed key wrongly (or still answers a deleted one) makes its key's answer differ.
 */
import { posix } from 'node:path';
import type { Bundle } from './bundle.js';
import { keyOf, type BundleDelta } from './bundle-delta.js';
import { valueOf } from './map-source.js';
import { sh } from '../ssh/index.js';

/** Paths a `unionmap:{…}` list can hold as they are (its separators are blanks and commas, its brackets braces). */
const UNION_SAFE = /^[A-Za-z0-9._/@+-]+$/;

interface Probe {
  /** The tables asked, in the union's order. */
  tables: string[];
  keys: string[];
}

interface Worked {
  /** Each changed table's keys (added, replaced or deleted). */
  changed: Array<{ name: string; keys: string[] }>;
  /** What a table holds at a key (`table\0key`), as the bundle says: looked up once. */
  held: Map<string, string | undefined>;
  /** deltaProbeScript's stdout when every answer is right, per probe layout (one union, or one probe per table). */
  expected: Map<string, string>;
  /** The probes of the two layouts, made once per delta: a node's staging path picks one. */
  union: Probe[];
  perTable: Probe[];
}

/**
 * Keys probed at most in a table built whole from its sent source: such a build is right or wrong
 * as a whole (a patched table, the base's `.db` plus edits, is probed at every changed key). A union
 * asks each key of every table in it (≈ 6 µs each on the lab), and a relay's first limit adds
 * thousands of keys to sender_service (tables.ts).
 */
export const SENT_TABLE_PROBES = 16;

/** At most `n` of the keys, spread evenly over them (first and last included). */
function spread(keys: string[], n: number): string[] {
  if (keys.length <= n) return keys;
  return Array.from({ length: n }, (_, i) => keys[Math.round((i * (keys.length - 1)) / (n - 1))]!);
}

/** Per delta, for every node deploying it (each has a staging dir of its own): its keys, and the values expected at them. */
const worked = new WeakMap<BundleDelta, Worked>();

function workedOut(delta: BundleDelta): Worked {
  let w = worked.get(delta);
  if (w === undefined) {
    const changed = Object.entries(delta.tables)
      .map(([name, t]) => {
        const keys = [...new Set([...t.added.map(keyOf), ...t.deleted])];
        return { name, keys: t.sent ? spread(keys, SENT_TABLE_PROBES) : keys };
      })
      .filter((t) => t.keys.length > 0);
    const union =
      changed.length === 0
        ? []
        : [{ tables: changed.map((t) => t.name), keys: [...new Set(changed.flatMap((t) => t.keys))] }];
    const perTable = changed.map((t) => ({ tables: [t.name], keys: t.keys }));
    worked.set(delta, (w = { changed, held: new Map(), expected: new Map(), union, perTable }));
  }
  return w;
}

/** One probe over every changed table, or one per table when a staged path cannot go in a union. */
function probesOf(staging: string, delta: BundleDelta): Probe[] {
  const { changed, union, perTable } = workedOut(delta);
  return changed.every((t) => UNION_SAFE.test(posix.join(staging, t.name))) ? union : perTable;
}

function mapSpec(staging: string, tables: string[]): string {
  const maps = tables.map((name) => `hash:${posix.join(staging, name)}`);
  return maps.length === 1 ? maps[0]! : `unionmap:{${maps.join(', ')}}`;
}

const SECTION = '@@relayplane-delta-probe@@ ';

/** `postmap -q` of every key a delta changed, in the staged tables (see the module comment). */
export function deltaProbeScript(staging: string, delta: BundleDelta): string {
  return scriptOf(staging, delta, probesOf(staging, delta));
}

function scriptOf(staging: string, delta: BundleDelta, probes: Probe[]): string {
  const eof = `RELAYPLANE_EOF_${delta.base.slice(0, 12)}`;
  const parts = probes.flatMap((probe, i) => [
    `echo ${sh(`${SECTION}${i}`)}`,
    `postmap -q - ${sh(mapSpec(staging, probe.tables))} <<'${eof}'\n${probe.keys.join('\n')}\n${eof}`,
  ]);
  return parts.length > 0 ? parts.join('\n') : 'true';
}

/** The value a probe of `tables` answers at `key`, as the bundle says: a union joins every table's by commas. */
function expectedAnswer(bundle: Bundle, delta: BundleDelta, tables: string[], key: string): string | undefined {
  const { held } = workedOut(delta);
  const values: string[] = [];
  for (const name of tables) {
    const at = `${name}\0${key}`;
    if (!held.has(at)) held.set(at, valueOf(bundle.files[name]!, key));
    const value = held.get(at);
    if (value !== undefined) values.push(value);
  }
  return values.length === 0 ? undefined : values.join(',');
}

/**
 * deltaProbeScript with the node's verdict: silent and exit 0 when every answer is what the bundle
 * holds (its whole output compared with the expected one, built once per delta), else the probes'
 * output and exit 1, for deltaProbeProblems. Chained steps after it run only when it passed, so a
 * deploy can send the steps after validate without waiting for its answer.
 */
export function deltaProbeVerdictScript(staging: string, bundle: Bundle, delta: BundleDelta): string {
  // $(…) drops the output's trailing newline, as the expected text has none.
  return [
    `rp_out=$(${scriptOf(staging, delta, probesOf(staging, delta))}\n)`,
    `if [ "$rp_out" = ${sh(expectedOutput(staging, bundle, delta))} ]; then :; else printf '%s\\n' "$rp_out"; false; fi`,
  ].join('\n');
}

/** The probes' whole output when every answer is right, without its last newline: once per delta and layout. */
function expectedOutput(staging: string, bundle: Bundle, delta: BundleDelta): string {
  const probes = probesOf(staging, delta);
  const w = workedOut(delta);
  const layout = probes === w.union ? 'union' : 'per table';
  let expected = w.expected.get(layout);
  if (expected === undefined) {
    const lines: string[] = [];
    probes.forEach((probe, i) => {
      lines.push(`${SECTION}${i}`);
      for (const key of probe.keys) {
        const answer = expectedAnswer(bundle, delta, probe.tables, key);
        if (answer !== undefined) lines.push(`${key}\t${answer}`);
      }
    });
    w.expected.set(layout, (expected = lines.join('\n')));
  }
  return expected;
}

export function deltaProbeProblems(stdout: string, bundle: Bundle, delta: BundleDelta, staging: string): string[] {
  // The output every node of a delta gives when it is right, built once: a node's thousands of
  // answers are then one comparison, and only a wrong output is read key by key.
  if (stdout.replace(/\n$/, '') === expectedOutput(staging, bundle, delta)) return [];
  const answers = new Map<string, Map<string, string>>();
  let current = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (line.startsWith(SECTION)) answers.set(line.slice(SECTION.length), (current = new Map()));
    else if (line.includes('\t')) current.set(line.slice(0, line.indexOf('\t')), line.slice(line.indexOf('\t') + 1));
  }
  const problems: string[] = [];
  probesOf(staging, delta).forEach((probe, i) => {
    const got = answers.get(String(i)) ?? new Map<string, string>();
    for (const key of probe.keys) {
      const expected = expectedAnswer(bundle, delta, probe.tables, key);
      const answer = got.get(key);
      if (answer === expected) continue;
      const where = probe.tables.join(', ');
      const secret = probe.tables.some((name) => bundle.files[name]?.secret === true);
      problems.push(
        expected === undefined
          ? `${where}: postmap -q ${key} still answers after its deletion`
          : `${where}: postmap -q ${key} → ${answer === undefined ? 'not found' : secret ? '(secret value differs)' : JSON.stringify(answer)}, expected ${secret ? 'the new entry' : JSON.stringify(expected)}`,
      );
    }
  });
  return problems;
}
