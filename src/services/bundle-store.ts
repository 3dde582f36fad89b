import { createHash } from 'node:crypto';
import type { PrismaClient } from '../db/prisma.js';
import { lineChunks } from '../lib/line-chunks.js';
import { DEFAULT_CONFIG_BUNDLE_RETENTION_DAYS } from '../lib/retention.js';
import type { SecretBox } from '../lib/secret-box.js';
import { type Bundle, masterCfLine } from '../postfix/index.js';
import type { ConfigBundleRepository, StoredFile } from '../repositories/config-bundle.repository.js';

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
export const DEFAULT_BUNDLE_RETENTION_SECONDS = DEFAULT_CONFIG_BUNDLE_RETENTION_DAYS * 86_400;

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
  let lastFiles = new Map<string, FileState>();

  function fileState(name: string, content: string, secret: boolean): FileState {
    const last = lastFiles.get(name);
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
    /**
     * Masks a compiled bundle (every secret replaced by its keyed fingerprint) and keeps it by
     * version (idempotent: the manifest, and the chunks not stored yet); returns the masked bundle.
     */
    async keep(bundle: Bundle): Promise<MaskedBundle> {
      const next = new Map<string, FileState>();
      const files: MaskedBundle['files'] = {};
      const stored: Record<string, StoredFile> = {};
      const chunkTexts = new Map<string, string>();
      for (const name of Object.keys(bundle.files).sort()) {
        const file = bundle.files[name]!;
        const state = fileState(name, file.content, file.secret);
        next.set(name, state);
        files[name] = { ...file, content: state.masked };
        stored[name] = { mode: file.mode, secret: file.secret, mapType: file.mapType, chunks: state.chunks.map((chunk) => chunk.digest) };
        for (const chunk of state.chunks) chunkTexts.set(chunk.digest, chunk.masked);
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
        found[name] = { content, mode: file.mode, secret: file.secret, mapType: file.mapType };
      }
      return { version: manifest.version, files: found, mainCf: manifest.mainCf, masterCf: manifest.masterCf, warnings: manifest.warnings };
    },
  };
}

export type BundleStore = ReturnType<typeof createBundleStore>;
