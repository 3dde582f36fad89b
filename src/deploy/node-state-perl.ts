/**
 * The node's state reads (postfix-config.ts: nodeStateScript, liveStateScript) as bodies of Perl
 * subs, for the node's Perl loop: the same output byte for byte, with no process started but the
 * ones the read is for (`find` for the release listing, `postconf` when main.cf, master.cf or
 * postconf changed since the connection last read them).
 */
import { posix } from 'node:path';
import { META_DIR, releasesListingArgs, type NodeLayout } from './layout.js';
import { CONFIG_READS, KNOWN, PATHS_COMMAND, SEP } from './node-state-format.js';
import { perlQuote } from '../ssh/index.js';

const q = perlQuote;

/**
 * Where `current` leads relative to the layout's root, resolved as the shell's `cd -P` resolves
 * it (every link on the way, `..` after it; a target that is no directory leads nowhere, and then
 * the link's own text stands, as readlink prints it); then the first line of its VERSION.
 */
function releaseReads(layout: NodeLayout): string[] {
  return [
    `my ($root, $current) = (${q(layout.root)}, ${q(layout.current)});`,
    // The physical path of an absolute one, or undef where it leads nowhere (40 links at most).
    'my $physical = sub { my @todo = split m{/+}, $_[0]; my @done; my $links = 0;',
    '  while (@todo) { my $c = shift @todo; next if $c eq "" || $c eq "."; if ($c eq "..") { pop @done; next }',
    '    my $path = join("/", "", @done, $c);',
    '    if (-l $path) { my $to = readlink $path; return undef if !defined $to || ++$links > 40;',
    '      unshift @todo, split m{/+}, $to; @done = () if $to =~ m{^/}; next }',
    '    return undef unless -d $path; push @done, $c }',
    '  return join("/", "", @done) };',
    'if (-l $current) { my ($r, $c) = ($physical->($root), $physical->($current));',
    '  if (defined $r && defined $c) { $c = substr($c, length($r) + 1) if index($c, "$r/") == 0; out("$c\\n") }',
    '  else { my $t = readlink $current; out("$t\\n") if defined $t } }',
    `out(${q(`${SEP}\n`)});`,
    // The shell's `read` takes whole lines only: a last line without its newline is not printed.
    'my $lines = sub { open(my $f, "<", $_[0]) or return (); my @l = grep { /\\n$/ } <$f>; close $f; @l };',
    `out(($lines->(${q(posix.join(layout.current, 'VERSION'))}))[0] // "");`,
  ];
}

/** liveStateScript with the config known: the release's link and VERSION. */
export function liveStatePerl(layout: NodeLayout): string {
  return [...releaseReads(layout), 'return 0;'].join('\n');
}

/**
 * The fingerprint of main.cf, master.cf and postconf as `cksum` prints it (POSIX CRC, size, path):
 * computed here up to SUM_IN_PERL_UP_TO bytes, by `cksum` past it (Perl's byte loop is far slower
 * than cksum's: past a few kB, summing here costs the node more than starting a process). A sum is kept for
 * the connection's loop while its file's inode, size and times are as they were and its change
 * time is older than the second the sum was taken in (a change within that second would leave
 * them alike): postconf is summed once per connection.
 */
const SUM_IN_PERL_UP_TO = 4096;

const FINGERPRINT = [
  'our (@rp_crc, %rp_sums);',
  'if (!@rp_crc) { for my $i (0 .. 255) { my $c = $i << 24;',
  '  for (1 .. 8) { $c = $c & 0x80000000 ? (($c << 1) ^ 0x04C11DB7) & 0xFFFFFFFF : ($c << 1) & 0xFFFFFFFF } $rp_crc[$i] = $c } }',
  'my $cksum = sub { my ($path) = @_; my @st = stat $path or return "cksum: $path: $!";',
  '  my $key = join(":", @st[0, 1, 7, 9, 10]); my $kept = $rp_sums{$path};',
  '  return $kept->[1] if $kept && $kept->[0] eq $key && $st[10] < $kept->[2];',
  `  if ($st[7] > ${SUM_IN_PERL_UP_TO}) { my $at = time; my ($rc, $o) = capture("cksum", $path); chomp $o;`,
  '    $rp_sums{$path} = [$key, $o, $at] unless $rc; return $o }',
  '  open(my $f, "<", $path) or return "cksum: $path: $!"; binmode $f; local $/; my $data = <$f> // ""; close $f;',
  '  my $c = 0; $c = (($c << 8) & 0xFFFFFFFF) ^ $rp_crc[(($c >> 24) ^ $_) & 0xFF] for unpack "C*", $data;',
  '  for (my $n = length $data; $n; $n >>= 8) { $c = (($c << 8) & 0xFFFFFFFF) ^ $rp_crc[(($c >> 24) ^ $n) & 0xFF] }',
  '  my $sum = ((~$c) & 0xFFFFFFFF) . " " . length($data) . " $path"; $rp_sums{$path} = [$key, $sum, time]; $sum };',
];

/**
 * nodeStateScript in Perl: the fingerprint (FINGERPRINT), the release's link, VERSION and managed
 * parameters, the releases (by `find`, for its sub-second times) when asked, then postconf's
 * answers unless the fingerprint is `known`.
 */
export function nodeStatePerl(layout: NodeLayout, known?: string, listReleases = false): string {
  const files = [posix.join(layout.configDir, 'main.cf'), posix.join(layout.configDir, 'master.cf')];
  const listing = releasesListingArgs(layout);
  return [
    ...FINGERPRINT,
    // postconf where the shell would find it in PATH (else by name, which cksum cannot open).
    'my ($bin) = grep { -f "$_/postconf" && -x _ } split /:/, $ENV{PATH} // ""; my $pc = defined $bin ? "$bin/postconf" : "postconf";',
    `my $fp = join("\\n", map { $cksum->($_) } ${files.map(q).join(', ')}, $pc); out("$fp\\n", ${q(`${SEP}\n`)});`,
    ...releaseReads(layout),
    `out(${q(`${SEP}\n`)}, $lines->(${q(posix.join(layout.current, META_DIR, 'params'))}), ${q(`${SEP}\n`)});`,
    // Its errors left out, as the shell's `2>/dev/null` leaves them.
    ...(listReleases
      ? [`{ my $e = length $main::ERR; out((capture(${listing.map(q).join(', ')}))[1]); substr($main::ERR, $e) = "" }`]
      : []),
    `out(${q(`${SEP}\n`)});`,
    ...(known === undefined ? [] : [`if ($fp eq ${q(known)}) { out(${q(`${KNOWN}\n`)}); return 0 }`]),
    `for my $cmd (${[PATHS_COMMAND, ...CONFIG_READS].map(q).join(', ')}) {`,
    '  my ($rc, $o) = capture(split / /, $cmd); out($o); return $rc if $rc;',
    `  out(${q(`${SEP}\n`)}) unless $cmd eq ${q(CONFIG_READS.at(-1)!)} }`,
    'return 0;',
  ].join('\n');
}
