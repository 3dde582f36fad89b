/**
 * The verify's read of the live release (liveStateScript with the config known) as the body of a
 * Perl sub, for the node's Perl loop: the same two lines, with no process started.
 */
import { posix } from 'node:path';
import type { NodeLayout } from './layout.js';
import { SEP } from './postfix-config.js';
import { perlQuote } from '../ssh/index.js';

/**
 * Where `current` leads relative to the layout's root, resolved as the shell's `cd -P` resolves
 * it (every link on the way, `..` after it; a target that is no directory leads nowhere, and then
 * the link's own text stands, as readlink prints it); then the first line of its VERSION.
 */
export function liveStatePerl(layout: NodeLayout): string {
  const q = perlQuote;
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
    `if (open(my $v, "<", ${q(posix.join(layout.current, 'VERSION'))})) { my $l = <$v>; close $v; out($l) if defined $l && $l =~ /\\n$/ }`,
    'return 0;',
  ].join('\n');
}
