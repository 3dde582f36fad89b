/**
 * The validate step's probes of a delta release (delta-release.ts): every key the delta changed is
 * asked in the staged tables, by one `postmap -q` over a `unionmap:` of the changed tables (one
 * Postfix program instead of one per table: each costs ≈ 12 ms of node CPU, BENCHMARKS.md).
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
}

/** Per delta, for every node deploying it (each has a staging dir of its own): its keys, and the values expected at them. */
const worked = new WeakMap<BundleDelta, Worked>();

function workedOut(delta: BundleDelta): Worked {
  let w = worked.get(delta);
  if (w === undefined) {
    const changed = Object.entries(delta.tables)
      .map(([name, t]) => ({ name, keys: [...new Set([...t.added.map(keyOf), ...t.deleted])] }))
      .filter((t) => t.keys.length > 0);
    worked.set(delta, (w = { changed, held: new Map() }));
  }
  return w;
}

/** One probe over every changed table, or one per table when a staged path cannot go in a union. */
function probesOf(staging: string, delta: BundleDelta): Probe[] {
  const { changed } = workedOut(delta);
  if (changed.length === 0) return [];
  if (!changed.every((t) => UNION_SAFE.test(posix.join(staging, t.name))))
    return changed.map((t) => ({ tables: [t.name], keys: t.keys }));
  return [{ tables: changed.map((t) => t.name), keys: [...new Set(changed.flatMap((t) => t.keys))] }];
}

function mapSpec(staging: string, tables: string[]): string {
  const maps = tables.map((name) => `hash:${posix.join(staging, name)}`);
  return maps.length === 1 ? maps[0]! : `unionmap:{${maps.join(', ')}}`;
}

const SECTION = '@@relayplane-delta-probe@@ ';

/** `postmap -q` of every key a delta changed, in the staged tables (see the module comment). */
export function deltaProbeScript(staging: string, delta: BundleDelta): string {
  const eof = `RELAYPLANE_EOF_${delta.base.slice(0, 12)}`;
  const parts = probesOf(staging, delta).flatMap((probe, i) => [
    `echo ${sh(`${SECTION}${i}`)}`,
    `postmap -q - ${sh(mapSpec(staging, probe.tables))} <<'${eof}'\n${probe.keys.join('\n')}\n${eof}`,
  ]);
  return parts.length > 0 ? parts.join('\n') : 'true';
}

export function deltaProbeProblems(stdout: string, bundle: Bundle, delta: BundleDelta, staging: string): string[] {
  const answers = new Map<string, Map<string, string>>();
  let current = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (line.startsWith(SECTION)) answers.set(line.slice(SECTION.length), (current = new Map()));
    else if (line.includes('\t')) current.set(line.slice(0, line.indexOf('\t')), line.slice(line.indexOf('\t') + 1));
  }
  const { held } = workedOut(delta);
  const heldAt = (name: string, key: string): string | undefined => {
    const at = `${name}\0${key}`;
    if (!held.has(at)) held.set(at, valueOf(bundle.files[name]!, key));
    return held.get(at);
  };
  const problems: string[] = [];
  probesOf(staging, delta).forEach((probe, i) => {
    const got = answers.get(String(i)) ?? new Map<string, string>();
    for (const key of probe.keys) {
      const values = probe.tables.flatMap((name) => heldAt(name, key) ?? []);
      const expected = values.length === 0 ? undefined : values.join(',');
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
