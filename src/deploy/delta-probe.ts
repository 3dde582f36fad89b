/**
 * The validate step's probes of a delta release (delta-release.ts): every key the delta changed is
 * asked with `postmap -q` in the staged tables.
 */
import { posix } from 'node:path';
import type { Bundle } from './bundle.js';
import { keyOf, type BundleDelta } from './bundle-delta.js';
import { sh } from '../ssh/index.js';

const PROBE = '@@relayplane-delta-table@@ ';

/** `postmap -q` of every key a delta changed, in the staged tables: added lines must answer their value, deleted keys nothing. */
export function deltaProbeScript(staging: string, delta: BundleDelta): string {
  const eof = `RELAYPLANE_EOF_${delta.base.slice(0, 12)}`;
  const parts = Object.entries(delta.tables).flatMap(([name, t]) => {
    const keys = [...new Set([...t.added.map(keyOf), ...t.deleted])];
    if (keys.length === 0) return [];
    return [
      `echo ${sh(`${PROBE}${name}`)}`,
      `postmap -q - ${sh(`hash:${posix.join(staging, name)}`)} <<'${eof}'\n${keys.join('\n')}\n${eof}`,
    ];
  });
  return parts.length > 0 ? parts.join('\n') : 'true';
}

export function deltaProbeProblems(stdout: string, bundle: Bundle, delta: BundleDelta): string[] {
  const answers = new Map<string, Map<string, string>>();
  let current = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    if (line.startsWith(PROBE)) answers.set(line.slice(PROBE.length), (current = new Map()));
    else if (line.includes('\t')) current.set(line.slice(0, line.indexOf('\t')), line.slice(line.indexOf('\t') + 1));
  }
  const problems: string[] = [];
  for (const [name, t] of Object.entries(delta.tables)) {
    const got = answers.get(name) ?? new Map<string, string>();
    const secret = bundle.files[name]?.secret === true;
    for (const line of t.added) {
      const key = keyOf(line);
      const value = line.slice(line.search(/[ \t]/)).trim();
      const answer = got.get(key);
      if (answer !== value)
        problems.push(
          `${name}: postmap -q ${key} → ${answer === undefined ? 'not found' : secret ? '(secret value differs)' : JSON.stringify(answer)}, expected the new entry`,
        );
    }
    for (const key of t.deleted)
      if (got.has(key)) problems.push(`${name}: postmap -q ${key} still answers after its deletion`);
  }
  return problems;
}
