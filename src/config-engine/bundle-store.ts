import { createHash } from 'node:crypto';
import type { PrismaClient } from '../db/prisma.js';
import { lineChunks } from '../lib/line-chunks.js';
import { DEFAULT_CONFIG_BUNDLE_RETENTION_DAYS } from '../lib/retention.js';
import {
  type Bundle,
  chunksOf,
  isMapSafeKey,
  isValidSaslUsername,
  maskedChunksOf,
  masterCfLine,
} from '../postfix/index.js';
import type { ConfigBundleRepository, StoredFile } from '../repositories/config-bundle.repository.js';

/** A bundle as it may be shown and stored: every secret replaced by its keyed fingerprint. */
export interface MaskedBundle {
  version: string;
  files: Record<string, { content: string; mode: number; secret: boolean; mapType: 'hash' | null }>;
  mainCf: Record<string, string>;
  masterCf: Array<{ name: string; line: string }>;
  warnings: string[];
}

/** A secret file's `masked` text was missing: the bundle is not stored or shown rather than shown in clear. */
export class UnmaskedSecretError extends Error {
  constructor(name: string) {
    super(`config file ${name} holds secrets but came without its masked form: not stored`);
    this.name = 'UnmaskedSecretError';
  }
}

/**
 * What a file may be shown and stored as: the incremental compiler's chunks when it made the file
 * (chunkedFile), else its text. A secret file's is its masked rendering, which the compiler builds
 * from each entry's username and fingerprint (BundleFile.masked): the text that holds the secrets
 * is never read here, so nothing in it can decide what is kept.
 */
function shownSource(name: string, file: Bundle['files'][string]): string | readonly string[] {
  if (!file.secret) return chunksOf(file) ?? file.content;
  const chunks = maskedChunksOf(file);
  if (chunks !== undefined) return chunks;
  if (typeof file.masked !== 'string') throw new UnmaskedSecretError(name);
  return file.masked;
}

/** `key user:sha:<hex>`: the only line a masked SASL table holds (maskedSaslPasswordValue). */
function isMaskedSaslLine(line: string): boolean {
  const space = line.indexOf(' ');
  if (space <= 0 || !isMapSafeKey(line.slice(0, space))) return false;
  const value = line.slice(space + 1);
  const colon = value.indexOf(':');
  return (
    colon > 0 && isValidSaslUsername(value.slice(0, colon)) && /^sha:[0-9a-f]{16,64}$/.test(value.slice(colon + 1))
  );
}

const HIDDEN = '(hidden: this line was stored unmasked by an earlier version)';

/**
 * A stored secret file as it may be shown: lines in the masked form pass, any other line is
 * replaced whole (earlier versions masked with a pattern that let some secrets through unmasked,
 * and a migration redacts those rows; this holds for rows written by such a version since).
 */
function maskedOnly(text: string): string {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i]!;
    if (line === '' || isMaskedSaslLine(line)) continue;
    const key = line.slice(0, Math.max(0, line.indexOf(' ')));
    lines[i] = isMapSafeKey(key) ? `${key} ${HIDDEN}` : HIDDEN;
  }
  return lines.join('\n');
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** How long stored bundles are kept by default (RELAYPLANE_CONFIG_BUNDLE_RETENTION_DAYS). */
export const DEFAULT_BUNDLE_RETENTION_SECONDS = DEFAULT_CONFIG_BUNDLE_RETENTION_DAYS * 86_400;

/** How often the leading sync worker prunes stored bundles (a periodic task of its own, see app.ts). */
export const BUNDLE_PRUNE_INTERVAL_MS = 60 * 60_000;

/** One chunk of a file as shown, and the digest it is stored under. */
interface Chunk {
  text: string;
  digest: string;
}

/** A file as last seen: what it is shown as (a text, or the compiler's chunks: shownSource), and its stored chunks. */
interface FileState {
  source: string | readonly string[];
  chunks: Chunk[];
}

/**
 * Keeps compiled bundles, masked, by version in PostgreSQL, each file as chunks stored once: the
 * incremental compiler's own (runs of lines it keeps between compiles), or content-defined chunks
 * of the text (src/lib/line-chunks.ts). The sync job stores the bundle of every change, and at
 * 100,000 domains a bundle is ≈ 20 MB of text of which a change alters a few lines: so the store
 * remembers the chunks of each file it last saw. A file shown as the same text or chunks array as
 * before costs nothing; in a changed file only new chunks are hashed, and a table the compiler
 * made is neither joined nor cut again; a chunk already stored is not sent again. Secret files are
 * kept as the compiler masked them (BundleFile.masked): their real text is neither stored nor
 * remembered here. Bundles older than the retention are pruned (prune()), except the newest and
 * those a node runs or is being given.
 */
export function createBundleStore(deps: {
  prisma: PrismaClient;
  repository: ConfigBundleRepository;
  retentionSeconds?: number;
}) {
  let lastFiles = new Map<string, FileState>();

  function fileState(name: string, source: string | readonly string[]): FileState {
    const last = lastFiles.get(name);
    if (last !== undefined && last.source === source) return last;
    const previous = new Map(last?.chunks.map((chunk) => [chunk.text, chunk]));
    const chunks = (typeof source === 'string' ? lineChunks(source) : source).map((slice): Chunk => {
      const known = previous.get(slice);
      if (known !== undefined) return known;
      // A copy of a slice of a text: it would keep the whole compiled file it was cut from alive for
      // as long as the chunk is remembered, one such file per change that made a chunk. (The
      // compiler's chunks are strings of their own.)
      const text = typeof source === 'string' ? Buffer.from(slice, 'utf8').toString('utf8') : slice;
      return { text, digest: sha256(text) };
    });
    return { source, chunks };
  }

  /** A file of the masked bundle: its text joined from the chunks only when read. */
  function shownFile(state: FileState, file: Bundle['files'][string]): MaskedBundle['files'][string] {
    const shown = { mode: file.mode, secret: file.secret, mapType: file.mapType } as MaskedBundle['files'][string];
    const { source } = state;
    let text = typeof source === 'string' ? source : undefined;
    Object.defineProperty(shown, 'content', {
      enumerable: true,
      get: () => (text ??= state.chunks.map((chunk) => chunk.text).join('')),
    });
    return shown;
  }

  return {
    /**
     * Keeps a compiled bundle masked (every secret file as the compiler masked it) by version
     * (idempotent: the manifest, and the chunks not stored yet); returns the masked bundle.
     */
    async keep(bundle: Bundle): Promise<MaskedBundle> {
      const next = new Map<string, FileState>();
      const files: MaskedBundle['files'] = {};
      const stored: Record<string, StoredFile> = {};
      const chunkTexts = new Map<string, string>();
      for (const name of Object.keys(bundle.files).sort()) {
        const file = bundle.files[name]!;
        const state = fileState(name, shownSource(name, file));
        next.set(name, state);
        // Field by field: a field added to BundleFile later is not shown until it is listed here.
        files[name] = shownFile(state, file);
        stored[name] = {
          mode: file.mode,
          secret: file.secret,
          mapType: file.mapType,
          chunks: state.chunks.map((chunk) => chunk.digest),
        };
        for (const chunk of state.chunks) chunkTexts.set(chunk.digest, chunk.text);
      }
      lastFiles = next;
      const masked: MaskedBundle = {
        version: bundle.version,
        files,
        mainCf: bundle.mainCf,
        masterCf: bundle.masterCf.map((service) => ({ name: service.name, line: masterCfLine(service) })),
        warnings: bundle.warnings,
      };
      await deps.repository.save(deps.prisma, { ...masked, files: stored }, chunkTexts);
      return masked;
    },

    /** Deletes stored bundles past the retention (the leading sync worker's periodic task), then unused chunks. */
    prune(): Promise<{ bundles: number; chunks: number }> {
      return deps.repository.prune(deps.prisma, deps.retentionSeconds ?? DEFAULT_BUNDLE_RETENTION_SECONDS);
    },

    /** A stored version, files whole again; null if it was never stored. */
    async find(version: string): Promise<MaskedBundle | null> {
      const manifest = await deps.repository.findManifest(deps.prisma, version);
      if (manifest === null) return null;
      const digests = Object.values(manifest.files).flatMap((file) => ('chunks' in file ? file.chunks : []));
      const chunks = await deps.repository.chunks(deps.prisma, [...new Set(digests)]);
      const text = (digest: string, name: string) => {
        const found = chunks.get(digest);
        if (found === undefined) throw new Error(`stored config ${version}: chunk ${digest} of ${name} is missing`);
        return found;
      };
      const found: MaskedBundle['files'] = {};
      for (const [name, file] of Object.entries(manifest.files)) {
        const content = 'content' in file ? file.content : file.chunks.map((digest) => text(digest, name)).join('');
        found[name] = {
          content: file.secret ? maskedOnly(content) : content,
          mode: file.mode,
          secret: file.secret,
          mapType: file.mapType,
        };
      }
      return {
        version: manifest.version,
        files: found,
        mainCf: manifest.mainCf,
        masterCf: manifest.masterCf,
        warnings: manifest.warnings,
      };
    },
  };
}

export type BundleStore = ReturnType<typeof createBundleStore>;
