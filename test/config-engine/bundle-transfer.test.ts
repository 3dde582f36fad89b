import { describe, expect, it } from 'vitest';
import {
  createBundleReceiver,
  createBundleSender,
  TransferMismatchError,
} from '../../src/config-engine/bundle-transfer.js';
import type { DeployableBundle } from '../../src/config-engine/index.js';
import { lineChunks } from '../../src/lib/line-chunks.js';
import { chunkedFile, chunksOf, type Bundle, type BundleFile } from '../../src/postfix/index.js';

const table = (count: number, changed = -1) =>
  Array.from(
    { length: count },
    (_, i) => `@d${String(i).padStart(6, '0')}.example smtp:[r${i === changed ? 'x' : i % 7}]\n`,
  ).join('');

function deployable(files: Record<string, string>, credentialIds: string[], secret = ''): DeployableBundle {
  const bundleFiles: Bundle['files'] = {};
  for (const [name, content] of Object.entries(files))
    bundleFiles[name] = { content, mode: 0o644, secret: false, mapType: 'hash' };
  if (secret !== '') bundleFiles.sasl = { content: secret, mode: 0o600, secret: true, mapType: 'hash', masked: 'm' };
  return {
    bundle: { version: 'v', files: bundleFiles, mainCf: { a: 'b' }, masterCf: [], warnings: ['w'], quarantine: [] },
    credentialIds,
  };
}

/** Through a real structured clone, as postMessage sends it. */
const cross = <T>(value: T): T => structuredClone(value);

describe('bundle transfer between the engine thread and the main thread', () => {
  it('gives back every bundle, sends unchanged files and ids as references and changed tables as their new chunks', () => {
    const sender = createBundleSender();
    const receiver = createBundleReceiver();
    const ids = ['c1', 'c2'];
    const first = deployable({ big: table(5000), small: 'a b\n' }, ids, 'u secret\n');
    const wire1 = cross(sender.encode(first));
    const got1 = receiver.decode(wire1);
    const { masked: _m, ...sasl } = first.bundle.files.sasl!;
    expect(got1.bundle).toEqual({ ...first.bundle, files: { ...first.bundle.files, sasl } });
    expect(got1.credentialIds).toEqual(ids);

    const second = deployable({ big: table(5000, 2500), small: 'a b\n' }, [...ids], 'u secret\n');
    const wire2 = cross(sender.encode(second));
    expect(wire2.credentialIds).toBeNull();
    expect(wire2.bundle.files.small).toMatchObject({ same: true });
    expect(wire2.bundle.files.sasl).not.toHaveProperty('masked');
    const parts = (wire2.bundle.files.big as { parts: Array<string | number> }).parts;
    const sent = parts.filter((p) => typeof p === 'string');
    expect(sent.length).toBeGreaterThanOrEqual(1);
    expect(sent.length).toBeLessThanOrEqual(2);
    const got2 = receiver.decode(wire2);
    expect(got2.bundle.files.big!.content).toBe(second.bundle.files.big!.content);
    expect(got2.bundle.files.small!.content).toBe('a b\n');
    expect(got2.bundle.files.sasl!.content).toBe('u secret\n');
    expect(got2.credentialIds).toEqual(ids);
    // The chunks cut in the engine thread are the text's chunks where the deployer reads them.
    expect(lineChunks(got2.bundle.files.big!.content)).toEqual(
      parts.map((p, i) =>
        typeof p === 'string' ? p : (lineChunks(first.bundle.files.big!.content)[p] ?? `missing ${i}`),
      ),
    );

    // A file gone, a file new, new ids.
    const third = deployable({ small: 'a c\n', other: 'x y\n' }, ['c3']);
    const got3 = receiver.decode(cross(sender.encode(third)));
    expect(Object.keys(got3.bundle.files).sort()).toEqual(['other', 'small']);
    expect(got3.bundle.files.small!.content).toBe('a c\n');
    expect(got3.credentialIds).toEqual(['c3']);
  });

  it('sends a chunked file as its own chunks, without joining its text, and compares it by its chunks array', () => {
    const sender = createBundleSender();
    const receiver = createBundleReceiver();
    const meta = { mode: 0o600, secret: true, mapType: 'hash' } as const;
    const joins: string[] = [];
    /** Chunks whose join() is recorded: reading the file's content or masked text joins them. */
    const watched = (label: string, chunks: string[]) =>
      Object.assign(chunks, {
        join: (sep?: string) => {
          joins.push(label);
          return Array.prototype.join.call(chunks, sep);
        },
      });
    const v1 = watched('v1', ['@a.example u:p1\n@b.example u:p2\n', '@c.example u:p3\n']);
    const file1 = chunkedFile(v1, meta, {
      masked: watched('masked', ['@a.example u:sha:1\n', '@c.example u:sha:3\n']),
    });
    const bundle = (file: BundleFile): DeployableBundle => ({
      bundle: { version: 'v', files: { sasl: file }, mainCf: {}, masterCf: [], warnings: [], quarantine: [] },
      credentialIds: [],
    });
    const wire1 = cross(sender.encode(bundle(file1)));
    expect(wire1.bundle.files.sasl).toEqual({ ...meta, parts: v1.slice() });
    // The same chunks array again (the compiler's table did not change): sent as `same`.
    const again = cross(sender.encode(bundle(chunkedFile(v1, meta))));
    expect(again.bundle.files.sasl).toEqual({ ...meta, same: true });
    // One chunk changed: the other goes by index.
    const v2 = watched('v2', [v1[0]!, '@c.example u:p4\n']);
    const wire2 = cross(sender.encode(bundle(chunkedFile(v2, meta))));
    expect(wire2.bundle.files.sasl).toEqual({ ...meta, parts: [0, '@c.example u:p4\n'] });
    expect(joins).toEqual([]);
    receiver.decode(wire1);
    receiver.decode(again);
    expect(receiver.decode(wire2).bundle.files.sasl!.content).toBe(
      '@a.example u:p1\n@b.example u:p2\n@c.example u:p4\n',
    );
    // Read where it is needed (the bundle store), the text is joined once.
    expect([file1.content, file1.content, file1.masked]).toEqual([
      '@a.example u:p1\n@b.example u:p2\n@c.example u:p3\n',
      '@a.example u:p1\n@b.example u:p2\n@c.example u:p3\n',
      '@a.example u:sha:1\n@c.example u:sha:3\n',
    ]);
    expect(joins).toEqual(['v1', 'masked']);
    expect(chunksOf(file1)).toBe(v1);
  });

  it('gives the same object again when nothing changed since the previous message', () => {
    const sender = createBundleSender();
    const receiver = createBundleReceiver();
    const first = receiver.decode(cross(sender.encode(deployable({ big: table(3000) }, ['c1']))));
    const again = receiver.decode(cross(sender.encode(deployable({ big: table(3000) }, ['c1']))));
    expect(again).toBe(first);
    const warned = deployable({ big: table(3000) }, ['c1']);
    warned.bundle.warnings = ['another'];
    const changed = receiver.decode(cross(sender.encode(warned)));
    expect(changed).not.toBe(first);
    expect(changed.bundle.warnings).toEqual(['another']);
    expect(changed.bundle.files.big!.content).toBe(first.bundle.files.big!.content);
  });

  it('refuses a message that does not follow the previous one it received', () => {
    const sender = createBundleSender();
    sender.encode(deployable({ big: table(3000) }, ['c1']));
    const wire = sender.encode(deployable({ big: table(3000, 5) }, ['c1']));
    expect(() => createBundleReceiver().decode(cross(wire))).toThrow(TransferMismatchError);
  });
});
