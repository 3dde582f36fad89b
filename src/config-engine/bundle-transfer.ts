import { isDeepStrictEqual } from 'node:util';
import { lineChunks } from '../lib/line-chunks.js';
import { chunkedFile, chunksOf, knownDigest, type Bundle, type BundleFile } from '../postfix/index.js';
import type { DeployableBundle } from './engine.js';

/**
 * A deployable bundle as it crosses from the engine thread to the main thread. Copying the whole
 * bundle (≈ 20 MB of text and one id per credential at 100,000 domains) stalls both threads for
 * every change, while a change alters a few lines: so each side remembers the files of the last
 * bundle that crossed, a file whose text is unchanged crosses as `same`, and a changed one as its
 * chunks, each the index of a chunk of the file's previous version or, when new, its text: a
 * chunked file's own (the incremental compiler's runs of lines, chunkedFile(): no text is joined or
 * cut on this side), any other file's content-defined chunks (src/lib/line-chunks.ts). Both sides
 * update their memory with every message, in order, so they stay mirrors for as long as the thread
 * lives (a new thread starts both afresh).
 */
type WireFile = Omit<BundleFile, 'content' | 'masked'> &
  ({ same: true } | { parts: Array<string | number>; sha256?: string | undefined });

export interface WireDeployable {
  bundle: Omit<Bundle, 'files'> & { files: Record<string, WireFile> };
  /** null: the same ids, in the same order, as the previous message's. */
  credentialIds: string[] | null;
}

interface Sent {
  /** The file's text, or the chunks array of a chunked file (chunksOf): compared by identity first. */
  source: string | readonly string[];
  chunks: readonly string[];
  /** Chunk text → its position in `chunks` (built when the next version of the file is encoded). */
  index?: Map<string, number>;
}

function sameIds(a: readonly string[] | undefined, b: readonly string[]): boolean {
  if (a === undefined || a.length !== b.length) return false;
  for (let i = 0; i < b.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

/** The engine thread's side: encodes each deployable bundle against the previous one it sent. */
export function createBundleSender() {
  let last = new Map<string, Sent>();
  let lastIds: string[] | undefined;
  return {
    encode({ bundle, credentialIds }: DeployableBundle): WireDeployable {
      const next = new Map<string, Sent>();
      const files: Record<string, WireFile> = {};
      for (const [name, file] of Object.entries(bundle.files)) {
        // Named, not spread: spreading would read (join) a chunked file's content and masked text.
        const meta = { mode: file.mode, secret: file.secret, mapType: file.mapType };
        const previous = last.get(name);
        // A chunked file is sent as its own chunks (the compiler keeps them: no text to join and cut).
        const own = chunksOf(file);
        const source = own ?? file.content;
        if (previous !== undefined && previous.source === source) {
          next.set(name, previous);
          files[name] = { ...meta, same: true };
          continue;
        }
        const chunks = own ?? lineChunks(file.content);
        if (previous !== undefined) previous.index ??= new Map(previous.chunks.map((chunk, i) => [chunk, i]));
        const parts = chunks.map((chunk) => previous?.index?.get(chunk) ?? chunk);
        next.set(name, { source, chunks });
        files[name] = { ...meta, parts, sha256: knownDigest(file) };
      }
      last = next;
      const ids = sameIds(lastIds, credentialIds) ? null : credentialIds;
      lastIds = credentialIds;
      return { bundle: { ...bundle, files }, credentialIds: ids };
    },
  };
}

/** A message the receiver cannot decode: the two sides no longer mirror each other. */
export class TransferMismatchError extends Error {
  constructor(detail: string) {
    super(`config engine thread: bundle transfer out of step (${detail})`);
    this.name = 'TransferMismatchError';
  }
}

interface Received {
  chunks: readonly string[];
  /** The file made of them (its text joined when first read): given again while they are the same. */
  file: BundleFile;
}

/** Every file and id as before, and the rest of the bundle equal (it is small: compared whole). */
function unchangedSince(previous: DeployableBundle, wire: WireDeployable): boolean {
  if (wire.credentialIds !== null) return false;
  const { files, ...rest } = wire.bundle;
  const { files: previousFiles, ...previousRest } = previous.bundle;
  const names = Object.keys(files);
  if (names.length !== Object.keys(previousFiles).length) return false;
  for (const name of names) {
    const file = files[name]!;
    const before = previousFiles[name];
    if (!('same' in file) || before === undefined) return false;
    if (file.mode !== before.mode || file.secret !== before.secret || file.mapType !== before.mapType) return false;
  }
  return isDeepStrictEqual(rest, previousRest);
}

/** The main thread's side: rebuilds each bundle from the message and the previous bundle received. */
export function createBundleReceiver() {
  let last = new Map<string, Received>();
  let lastIds: string[] | undefined;
  let lastDecoded: DeployableBundle | undefined;
  return {
    /**
     * The bundle again, as the same object when nothing changed since the previous message (a run's
     * compile after its preparation): what the deployer computed of it once is kept by object.
     */
    decode(wire: WireDeployable): DeployableBundle {
      if (lastDecoded !== undefined && unchangedSince(lastDecoded, wire)) return lastDecoded;
      const next = new Map<string, Received>();
      const files: Bundle['files'] = {};
      for (const [name, file] of Object.entries(wire.bundle.files)) {
        const previous = last.get(name);
        const meta = { mode: file.mode, secret: file.secret, mapType: file.mapType };
        let received: Received;
        if ('same' in file) {
          if (previous === undefined) throw new TransferMismatchError(`${name}: unchanged, but never received`);
          const { mode, secret, mapType } = previous.file;
          received =
            mode === meta.mode && secret === meta.secret && mapType === meta.mapType
              ? previous
              : {
                  chunks: previous.chunks,
                  file: chunkedFile(previous.chunks, meta, { sha256: knownDigest(previous.file) }),
                };
        } else {
          const chunks = file.parts.map((part) => {
            if (typeof part === 'string') return part;
            const chunk = previous?.chunks[part];
            if (chunk === undefined) throw new TransferMismatchError(`${name}: no chunk ${part} received before`);
            return chunk;
          });
          // A table's unchanged chunks are the same strings as before: what the deployer derives
          // per chunk (table-view.ts) is found again by identity, and no text is joined unless read.
          received = { chunks, file: chunkedFile(chunks, meta, { sha256: file.sha256 }) };
        }
        next.set(name, received);
        files[name] = received.file;
      }
      let credentialIds = wire.credentialIds;
      if (credentialIds === null) {
        if (lastIds === undefined) throw new TransferMismatchError('credential ids unchanged, but never received');
        credentialIds = lastIds;
      }
      last = next;
      lastIds = credentialIds;
      lastDecoded = { bundle: { ...wire.bundle, files }, credentialIds };
      return lastDecoded;
    },
  };
}
