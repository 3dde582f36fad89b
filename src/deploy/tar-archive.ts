/**
 * A minimal ustar writer, so a release's files (every table, both manifests, or a delta's) go to
 * the node in one `tar -x`: one command, one round trip, whatever the number of files. Regular
 * files, directories and symbolic links; names are the bundle's validated ones (≤ 100 bytes, no
 * `..`), link targets the layout's relative ones.
 */

export interface TarEntry {
  /** Relative path; a trailing `/` makes a directory. */
  name: string;
  mode: number;
  content?: string;
  /** Makes a symbolic link to this target (≤ 100 bytes). */
  linkTo?: string;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

function header(name: string, mode: number, size: number, type: '0' | '2' | '5', linkTo = ''): Buffer {
  if (Buffer.byteLength(name) > 100 || name.split('/').includes('..') || name.startsWith('/')) {
    throw new Error(`tar entry name not allowed: ${JSON.stringify(name)}`);
  }
  if (Buffer.byteLength(linkTo) > 100) throw new Error(`tar link target too long: ${JSON.stringify(linkTo)}`);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii'); // uid: root (extracted with --no-same-owner anyway)
  h.write(octal(0, 8), 116, 'ascii'); // gid
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(0, 12), 136, 'ascii'); // mtime: extracted with -m (now), so .db files are newer
  h.write('        ', 148, 'ascii'); // checksum field counts as spaces while summing
  h.write(type, 156, 'ascii');
  h.write(linkTo, 157, 100, 'utf8');
  h.write('ustar\0' + '00', 257, 'ascii');
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

export function tarArchive(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.name.endsWith('/')) {
      parts.push(header(e.name, e.mode, 0, '5'));
      continue;
    }
    if (e.linkTo !== undefined) {
      parts.push(header(e.name, e.mode, 0, '2', e.linkTo));
      continue;
    }
    const body = Buffer.from(e.content ?? '', 'utf8');
    parts.push(header(e.name, e.mode, body.length, '0'), body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}
