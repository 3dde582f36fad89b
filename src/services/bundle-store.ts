import { createHash } from 'node:crypto';
import type { PrismaClient } from '../db/prisma.js';
import { lineChunks } from '../lib/line-chunks.js';
import type { SecretBox } from '../lib/secret-box.js';
import { type Bundle, masterCfLine } from '../postfix/index.js';
import type { ConfigBundleRepository, StoredFile, StoredManifest } from '../repositories/config-bundle.repository.js';

/** A bundle as it may be shown and stored: every secret replaced by its keyed fingerprint. */
export interface MaskedBundle {
  version: string;
  files: Record<string, { content: string; mode: number; secret: boolean; mapType: 'hash' | null }>;
  mainCf: Record<string, string>;
  masterCf: Array<{ name: string; line: string }>;
  warnings: string[];
}

/**
 * Secret files hold `key username:secret` lines (smtp_sasl_password_maps); the secret becomes
 * `sha:<fingerprint>`, so a rotation still shows up in a diff while the value never leaves.
 */
function maskSecretLines(text: string, fingerprint: (secret: string) => string): string {
  return text
    .split('\n')
    .map((line) => {
      const match = /^(\S+\s+)([^:]*):(.*)$/.exec(line);
      if (match === null || line.startsWith('#')) return line;
      return `${match[1]}${match[2]}:sha:${fingerprint(match[3]!)}`;
    })
    .join('\n');
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** How long stored bundles are kept by default (RELAYPLANE_CONFIG_BUNDLE_RETENTION_DAYS). */
export const DEFAULT_BUNDLE_RETENTION_SECONDS = 30 * 86_400;

/** How often the leading sync worker prunes stored bundles (a periodic task of its own, see app.ts). */
export const BUNDLE_PRUNE_INTERVAL_MS = 60 * 60_000;

/** One chunk of a file as compiled, masked, and the digest it is stored under (of the masked text). */
interface Chunk {
  text: string;
  masked: string;
  digest: string;
}

/** A file as last seen: its text, its chunks, and its masked text (the same string when not secret). */
interface FileState {
  content: string;
  secret: boolean;
  chunks: Chunk[];
  masked: string;
  /**
   * The fingerprint of each secret the file held (HMAC is most of masking's cost): a relay-wide
   * rotation changes lines in most chunks of the file, but one secret each.
   */
  fingerprints: Map<string, string>;
}

/** Fingerprints remembered per file, up to this many; then they start over (rotated-away secrets pile up). */
const MAX_FINGERPRINTS = 500_000;

/**
 * Masks compiled bundles and keeps them by version in PostgreSQL, each file as content-defined
 * chunks stored once (src/lib/line-chunks.ts). The sync job stores the bundle of every change, and
 * at 100,000 domains a bundle is ≈ 20 MB of text of which a change alters a few lines: so the
 * store remembers the chunks of each file it last saw. A file whose text is the same string as
 * before costs nothing; in a changed file only new chunks are masked (an HMAC per secret not seen
 * before) and hashed; a chunk already stored is not sent again. Chunks are cut by the lines' keys,
 * so a file and its masked form have the same boundaries. Bundles older than the retention are
 * pruned (prune()), except the newest and those a node runs or is being given.
 */
export function createBundleStore(deps: { prisma: PrismaClient; secretBox: SecretBox; repository: ConfigBundleRepository; retentionSeconds?: number }) {
  let files = new Map<string, FileState>();

  function fileState(name: string, content: string, secret: boolean): FileState {
    const last = files.get(name);
    if (last !== undefined && last.secret === secret && last.content === content) return last;
    const previous = new Map(last?.secret === secret ? last.chunks.map((chunk) => [chunk.text, chunk]) : []);
    const fingerprints = last?.secret === true && secret && last.fingerprints.size < MAX_FINGERPRINTS ? last.fingerprints : new Map<string, string>();
    const fingerprint = (value: string) => {
      let known = fingerprints.get(value);
      if (known === undefined) fingerprints.set(value, (known = deps.secretBox.fingerprint(value)));
      return known;
    };
    const chunks = lineChunks(content).map((slice): Chunk => {
      const known = previous.get(slice);
      if (known !== undefined) return known;
      // A copy: a slice would keep the whole compiled file it was cut from alive for as long as
      // the chunk is remembered, one such file per change that made a chunk.
      const text = Buffer.from(slice, 'utf8').toString('utf8');
      const masked = secret ? maskSecretLines(text, fingerprint) : text;
      return { text, masked, digest: sha256(masked) };
    });
    return { content, secret, chunks, masked: secret ? chunks.map((chunk) => chunk.masked).join('') : content, fingerprints };
  }

  return {
    /** The bundle with every secret replaced by its keyed fingerprint. */
    mask(bundle: Bundle): MaskedBundle {
      const next = new Map<string, FileState>();
      const masked: MaskedBundle['files'] = {};
      for (const name of Object.keys(bundle.files).sort()) {
        const file = bundle.files[name]!;
        const state = fileState(name, file.content, file.secret);
        next.set(name, state);
        masked[name] = { ...file, content: state.masked };
      }
      files = next;
      return {
        version: bundle.version,
        files: masked,
        mainCf: bundle.mainCf,
        masterCf: bundle.masterCf.map((service) => ({ name: service.name, line: masterCfLine(service) })),
        warnings: bundle.warnings,
      };
    },

    /** Keeps a masked bundle by version (idempotent): its manifest, and the chunks not stored yet. */
    async save(masked: MaskedBundle): Promise<void> {
      const manifestFiles: Record<string, StoredFile> = {};
      const chunkTexts = new Map<string, string>();
      for (const [name, file] of Object.entries(masked.files)) {
        // The chunks mask() made, or (a bundle masked elsewhere) its masked text cut the same way.
        const state = files.get(name);
        const chunks =
          state !== undefined && state.masked === file.content
            ? state.chunks.map((chunk) => ({ digest: chunk.digest, masked: chunk.masked }))
            : lineChunks(file.content).map((text) => ({ digest: sha256(text), masked: text }));
        manifestFiles[name] = { mode: file.mode, secret: file.secret, mapType: file.mapType, chunks: chunks.map((chunk) => chunk.digest) };
        for (const chunk of chunks) chunkTexts.set(chunk.digest, chunk.masked);
      }
      const manifest: StoredManifest = { version: masked.version, files: manifestFiles, mainCf: masked.mainCf, masterCf: masked.masterCf, warnings: masked.warnings };
      await deps.repository.save(deps.prisma, manifest, chunkTexts);
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
      const found: MaskedBundle['files'] = {};
      for (const [name, file] of Object.entries(manifest.files)) {
        const content =
          'content' in file
            ? file.content
            : file.chunks
                .map((digest) => {
                  const text = chunks.get(digest);
                  if (text === undefined) throw new Error(`stored config ${version}: chunk ${digest} of ${name} is missing`);
                  return text;
                })
                .join('');
        found[name] = { content, mode: file.mode, secret: file.secret, mapType: file.mapType };
      }
      return { version: manifest.version, files: found, mainCf: manifest.mainCf, masterCf: manifest.masterCf, warnings: manifest.warnings };
    },
  };
}

export type BundleStore = ReturnType<typeof createBundleStore>;
