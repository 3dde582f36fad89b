/**
 * One `/bin/sh` per SSH connection, kept open for every command the connection runs.
 *
 * sshd hands each exec to the node user's login shell, and bash sources `~/.bashrc` before the
 * command runs: on an admin's server that file can cost half a second (a `pyenv init`), paid by
 * every exec. Here the login shell runs once, to start a plain `/bin/sh` loop with a fixed PATH,
 * `LC_ALL=C` and umask 022; each command is then sent to that loop as a frame and runs in a
 * subshell of it, so its `exit`, `cd`, `umask` or `set -e` stay its own. Where perl runs (every
 * Debian and Ubuntu node: perl-base is essential), that shell hands the loop to a Perl one that
 * speaks the same frames with fewer processes per command (PERL_LOOP). A command that also comes
 * as Perl (file work: renames, links, a tree's removal, a signal) runs there with none at all.
 *
 * Frames in: `<script bytes> <stdin bytes> <gate>[ p]\n`, then the script, then its stdin; ` p`
 * (sent to the Perl loop only) marks a script written in Perl, run by the loop itself. The shell
 * loop reads them with `read` and `head -c`, which never read past what they need, so the stream
 * stays in step. Frames out: `<token> <exit code> <stdout bytes> <stderr bytes>\n` and both outputs, which
 * the command wrote to files in a private (0700) directory: nothing it prints can fake a frame.
 * Frames run in the order sent; callers may send the next before the previous one answers. A
 * gated frame (gate 1) runs only when the frame before it exited 0; otherwise it is answered as
 * skipped, and so is every gated frame after it: a chain of steps sent at once stops on the node
 * at its first failure, as it would if each step waited for the previous answer.
 */
import { randomBytes } from 'node:crypto';
import { RemoteCommandError, excerpt } from './errors.js';

/** Where Postfix and the usual tools are on Debian, RHEL, SUSE, Alpine and source installs. */
export const DEFAULT_REMOTE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The exit code a skipped gated frame is answered with (no process exits with it: codes end at 255). */
export const SKIPPED_EXIT = 256;

export interface ShellResult {
  code: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** The part of an ssh2 exec channel the shell uses (ssh2's typings are not a dependency). */
export interface ShellChannel {
  write(data: Buffer | string): boolean;
  end(): void;
  close(): void;
  on(event: 'data', listener: (chunk: Buffer) => void): this;
  on(event: 'close', listener: () => void): this;
  stderr: { on(event: 'data', listener: (chunk: Buffer) => void): void };
}

export type OpenChannel = (command: string) => Promise<ShellChannel>;

interface Pending {
  resolve: (r: ShellResult) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  command: string;
}

/** PATH must be a plain colon-separated list of absolute directories (it is put in the loop as text). */
export function assertRemotePath(path: string): void {
  if (!/^\/[A-Za-z0-9._/+-]*(:\/[A-Za-z0-9._/+-]*)*$/.test(path)) {
    throw new Error(`the remote PATH must be absolute directories separated by ':' (got ${JSON.stringify(path)})`);
  }
}

/**
 * The same loop in Perl (perl-base is essential on Debian and Ubuntu; elsewhere the shell loop runs).
 * Perl reads the frames and writes the answers; a `/bin/sh` it started once runs each script in a
 * subshell, as the shell loop does (same `$$`, same `exit`, `cd`, `umask` and `set -e` scope), told
 * to go by a line on a pipe and answering with the exit code on another. A frame then costs one
 * subshell instead of `head -c` for its script (and its input), the subshell, and `wc` and `cat`
 * for any output (each process costs a node milliseconds: BENCHMARKS.md); Perl does not fork per
 * frame (a fork of perl costs more than a shell's), nor for the programs a Perl frame runs
 * (capture: that shell execs them). No module but `strict` (perl-base has it), no single quote: it
 * travels in the shell loop's text as one single-quoted word.
 */
const PERL_LOOP = [
  'my ($tok, $dir, $skipped) = @ARGV; my ($buf, $rc, $child) = ("", 0, 0);',
  'END { if (!$child && opendir(my $d, $dir)) { unlink map { "$dir/$_" } grep { !/^[.]/ } readdir $d; closedir $d; rmdir $dir } }',
  '$SIG{HUP} = sub { exit 129 }; $SIG{TERM} = sub { exit 143 }; umask 022;',
  'pipe(my $go_r, my $go_w) && pipe(my $rc_r, my $rc_w) or exit 115;',
  'my $runner = fork; exit 115 unless defined $runner;',
  'if ($runner == 0) {',
  '  $child = 1;',
  '  open(STDIN, "<&", $go_r) && open(STDOUT, ">&", $rc_w) or exit 126;',
  '  exec { "/bin/sh" } "sh", "-c", "while read -r rp_go; do set --; (. \\"\\$0/s\\") <\\"\\$0/i\\" >\\"\\$0/o\\" 2>\\"\\$0/e\\"; echo \\$?; done", $dir;',
  '  exit 127;',
  '}',
  'close $go_r; close $rc_w;',
  'sub fill { my $r = sysread(STDIN, $buf, 65536, length $buf); exit 112 unless defined $r; return $r }',
  'sub take { my ($n) = @_; while (length $buf < $n) { exit 112 unless fill() } return substr($buf, 0, $n, "") }',
  'sub put { my ($data) = @_; my $off = 0; while ($off < length $data) { my $w = syswrite(STDOUT, $data, length($data) - $off, $off); exit 114 unless $w; $off += $w } }',
  'sub save { my ($name, $data) = @_; open(my $f, ">", "$dir/$name") or exit 113; binmode $f; print {$f} $data or exit 113; close $f or exit 113 }',
  // Exactly `size` bytes, as the header said (a file that shrank since is padded: the stream stays in step).
  'sub slurp { my ($name, $size) = @_; my $data = ""; return $data unless $size; open(my $f, "<", "$dir/$name") or exit 114; binmode $f; while (length $data < $size) { my $r = sysread($f, $data, $size - length $data, length $data); last unless $r } close $f; return $data . "\\0" x ($size - length $data) }',
  'sub run { syswrite($go_w, "\\n") or exit 116; my $line = ""; while ($line !~ /\\n/) { sysread($rc_r, $line, 16, length $line) or exit 116 } return $line + 0 }',
  // Perl frames: a body compiled into a sub and called here, with out() and err() for its outputs,
  // rmtree() for `rm -rf` and capture() for a command's output; it returns its exit code, and dies
  // with what would go to stderr.
  'our ($OUT, $ERR) = ("", ""); sub out { $OUT .= join "", @_; 1 } sub err { $ERR .= join "", @_; 1 }',
  // capture: a program and its arguments, for its stdout and exit code (its stderr added to the
  // frame's), run by the loop's shell as `exec` in its subshell: a fork of that small shell, not of
  // this process, whose memory grows with the frames it has read.
  'sub capture { save("s", join(" ", "exec", map { my $a = $_; $a =~ s/\\x27/\\x27\\\\\\x27\\x27/g; "\\x27$a\\x27" } @_)); save("i", "");',
  '  my $rc = run(); my ($o, $e) = (slurp("o", -s "$dir/o" || 0), slurp("e", -s "$dir/e" || 0)); $ERR .= $e; return ($rc, $o) }',
  'sub rmtree { my ($p) = @_; lstat $p or return 1; unless (-d _) { return unlink $p }',
  '  opendir(my $d, $p) or return 0; my @in = grep { !/^[.][.]?$/ } readdir $d; closedir $d;',
  '  for (@in) { rmtree("$p/$_") or return 0 } return rmdir $p }',
  'sub perl_frame { my ($code, $in) = @_; ($OUT, $ERR) = ("", ""); my $f = eval "use strict; sub { $code\\n}";',
  '  my $r = $f ? eval { $f->($in) } : undef; if (!defined $r) { $ERR .= $@ eq "" ? "no exit code\\n" : $@; $r = 1 } return $r + 0 }',
  'put("\\n$tok ready perl\\n");',
  'for (;;) {',
  '  my $at; while (($at = index($buf, "\\n")) < 0) { exit 0 unless fill() }',
  '  my $head = substr($buf, 0, $at + 1, ""); chop $head; my ($slen, $ilen, $gate, $kind) = split / /, $head;',
  '  my ($script, $input) = (take($slen), $ilen ? take($ilen) : "");',
  '  if ($gate == 1 && $rc != 0) { $rc = $skipped; put("$tok $rc 0 0\\n"); next }',
  '  if (defined $kind && $kind eq "p") { $rc = perl_frame($script, $input); put("$tok $rc " . length($OUT) . " " . length($ERR) . "\\n$OUT$ERR"); next }',
  '  save("s", $script); save("i", $input);',
  '  $rc = run(); save("i", "");',
  '  my ($o, $e) = (-s "$dir/o" || 0, -s "$dir/e" || 0);',
  // One write per answer: each write the node makes is one SSH packet the control plane deciphers.
  '  put("$tok $rc $o $e\\n" . slurp("o", $o) . slurp("e", $e));',
  '}',
].join('\n');

/** The loop the login shell starts; `token` marks its frames. `perl`: run the Perl loop where a perl runs. */
function loopScript(token: string, path: string, perl: boolean): string {
  return [
    `PATH=${path}; export PATH`,
    'LC_ALL=C; export LC_ALL',
    // Perl's own environment too: nothing on the node may load modules into the loop or change its I/O.
    'unset LANG LANGUAGE CDPATH ENV BASH_ENV PERL5LIB PERLLIB PERL5OPT PERL_UNICODE PERLIO',
    'umask 077',
    'rp_dir=$(mktemp -d) || exit 111',
    ...(perl
      ? [
          // Checked once per connection: a perl that cannot run leaves the shell loop to it.
          `if perl -e 1 >/dev/null 2>&1; then exec perl -e '${PERL_LOOP}' ${token} "$rp_dir" ${SKIPPED_EXIT}; fi`,
        ]
      : []),
    'trap \'rm -rf "$rp_dir"\' EXIT',
    "trap 'exit 129' HUP",
    "trap 'exit 143' TERM",
    'umask 022',
    `printf '\\n%s ready\\n' ${token}`,
    'rp_rc=0',
    'while IFS=" " read -r rp_slen rp_ilen rp_gate; do',
    '  head -c "$rp_slen" >"$rp_dir/s" || exit 112',
    '  if [ "$rp_ilen" = 0 ]; then : >"$rp_dir/i"; else head -c "$rp_ilen" >"$rp_dir/i" || exit 112; fi',
    '  if [ "$rp_gate" = 1 ] && [ "$rp_rc" != 0 ]; then',
    `    rp_rc=${SKIPPED_EXIT}; : >"$rp_dir/o"; : >"$rp_dir/e"`,
    '  else',
    '    set --; (. "$rp_dir/s") <"$rp_dir/i" >"$rp_dir/o" 2>"$rp_dir/e"',
    '    rp_rc=$?',
    '  fi',
    '  : >"$rp_dir/i"',
    // Every process a frame starts costs a fork and an exec on the node: an empty answer (`test -s`
    // is built in) needs none; otherwise both sizes come from one wc (`N o`, `M e`, `T total`).
    '  if [ -s "$rp_dir/o" ] || [ -s "$rp_dir/e" ]; then',
    '    set -- $(cd "$rp_dir" && wc -c o e)',
    `    printf '%s %s %s %s\\n' ${token} "$rp_rc" "$1" "$3"`,
    '    cat "$rp_dir/o" "$rp_dir/e"',
    `  else printf '%s %s 0 0\\n' ${token} "$rp_rc"; fi`,
    'done',
    '',
  ].join('\n');
}

export class RemoteShell {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly outbox: Buffer[] = [];
  private readonly queue: Pending[] = [];
  private ready = false;
  private perlLoop = false;
  private closedReason: string | undefined;
  private stderrTail = '';
  private onReady: { resolve: () => void; reject: (err: Error) => void } | undefined;

  private constructor(
    private readonly channel: ShellChannel,
    private readonly token: string,
    private readonly host: string,
  ) {
    channel.on('data', (chunk: Buffer) => this.receive(chunk));
    channel.stderr.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-2000);
    });
    channel.on('close', () =>
      this.fail(
        `the remote shell on ${host} ended${this.stderrTail.trim() === '' ? '' : `: ${excerpt(this.stderrTail, 300)}`}`,
      ),
    );
  }

  /**
   * Starts the loop through the login shell (the only command that shell ever runs) and resolves
   * once it answers; `startMs` is what that took: one round trip plus the login's own cost.
   */
  static async start(
    open: OpenChannel,
    options: {
      host: string;
      path: string;
      timeoutMs: number;
      sudo?: boolean;
      /** 'sh': the shell loop even where perl runs (default 'auto': the Perl loop where it can). */
      loop?: 'auto' | 'sh';
    },
  ): Promise<{ shell: RemoteShell; startMs: number }> {
    assertRemotePath(options.path);
    const token = `@@relayplane-${randomBytes(8).toString('hex')}`;
    const loop = Buffer.from(loopScript(token, options.path, options.loop !== 'sh'), 'utf8');
    const started = performance.now();
    // Only `"`, `$`, `(` inside single quotes: the same meaning in sh, bash, zsh, fish and csh. A
    // deploy user other than root runs the shell as root through sudo, never asked for a password.
    const channel = await open(
      `exec ${options.sudo === true ? 'sudo -n ' : ''}/bin/sh -c 'eval "$(head -c ${loop.length})"'`,
    );
    const shell = new RemoteShell(channel, token, options.host);
    const ready = new Promise<void>((resolve, reject) => {
      shell.onReady = { resolve, reject };
    });
    const timer = setTimeout(
      () => shell.fail(`the remote shell on ${options.host} did not start within ${options.timeoutMs} ms`),
      options.timeoutMs,
    );
    channel.write(loop);
    try {
      await ready;
    } finally {
      clearTimeout(timer);
    }
    return { shell, startMs: performance.now() - started };
  }

  get isOpen(): boolean {
    return this.closedReason === undefined;
  }

  /** Whether the Perl loop runs the frames (so a command's Perl body runs in place of its script). */
  get runsPerl(): boolean {
    return this.perlLoop;
  }

  /**
   * Runs one script; resolves with its exit code and outputs, rejects only when the shell is lost.
   * `perl`: the same command as the body of a Perl sub (PERL_LOOP's perl_frame), run in place of the
   * script by the Perl loop itself, with no process started; the shell loop runs the script.
   */
  run(
    script: string,
    stdin: Buffer | string | undefined,
    timeoutMs: number,
    gated = false,
    perl?: string,
  ): Promise<ShellResult> {
    if (this.closedReason !== undefined) return Promise.reject(new RemoteCommandError(this.closedReason, -1, ''));
    const inPerl = perl !== undefined && this.perlLoop;
    const body = Buffer.from(inPerl ? perl : script, 'utf8');
    const input =
      stdin === undefined ? Buffer.alloc(0) : typeof stdin === 'string' ? Buffer.from(stdin, 'utf8') : stdin;
    return new Promise<ShellResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        // The command may still run on the node; the shell is out of step from here on.
        this.fail(`command timed out after ${timeoutMs} ms: ${excerpt(script, 120)}`);
      }, timeoutMs);
      this.queue.push({ resolve, reject, timer, command: script });
      const header = `${body.length} ${input.length} ${gated ? 1 : 0}${inPerl ? ' p' : ''}\n`;
      this.send(Buffer.from(header, 'latin1'), body, input);
    });
  }

  /**
   * Frames sent in one turn of the event loop (steps sent ahead of an answer) leave in one write:
   * one SSH packet to encrypt and one socket write instead of one per frame.
   */
  private send(...parts: Buffer[]): void {
    if (this.outbox.length === 0) process.nextTick(() => this.flush());
    this.outbox.push(...parts);
  }

  private flush(): void {
    const parts = this.outbox.splice(0);
    if (this.closedReason === undefined && parts.length > 0) this.channel.write(Buffer.concat(parts));
  }

  close(): void {
    if (this.closedReason === undefined) {
      this.closedReason = `the remote shell on ${this.host} was closed`;
      this.channel.end();
    }
    this.channel.close();
    this.rejectAll(new RemoteCommandError(this.closedReason, -1, ''));
  }

  private fail(reason: string): void {
    if (this.closedReason === undefined) this.closedReason = reason;
    this.onReady?.reject(new RemoteCommandError(reason, -1, ''));
    this.onReady = undefined;
    this.rejectAll(new RemoteCommandError(reason, -1, ''));
    this.channel.close();
  }

  private rejectAll(err: Error): void {
    for (const p of this.queue.splice(0)) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  private receive(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (!this.ready) {
      // Whatever the login's dotfiles print comes before the ready line and is skipped.
      // `<token> ready` from the shell loop, `<token> ready perl` from the Perl one.
      const mark = Buffer.from(`\n${this.token} ready`, 'latin1');
      const at = this.buffer.indexOf(mark);
      const end = at === -1 ? -1 : this.buffer.indexOf(10, at + mark.length);
      if (end === -1) return;
      this.perlLoop = this.buffer.subarray(at + mark.length, end).toString('latin1') === ' perl';
      this.buffer = this.buffer.subarray(end + 1);
      this.ready = true;
      this.onReady?.resolve();
      this.onReady = undefined;
    }
    for (;;) {
      const newline = this.buffer.indexOf(10);
      if (newline === -1) return;
      const header = /^(\S+) (\d+) (\d+) (\d+)$/.exec(this.buffer.subarray(0, newline).toString('latin1'));
      if (header === null || header[1] !== this.token) {
        this.fail(
          `the remote shell on ${this.host} answered out of step: ${excerpt(this.buffer.subarray(0, Math.min(newline, 120)).toString('utf8'))}`,
        );
        return;
      }
      const outLength = Number(header[3]);
      const errLength = Number(header[4]);
      const end = newline + 1 + outLength + errLength;
      if (this.buffer.length < end) return;
      const stdout = this.buffer.subarray(newline + 1, newline + 1 + outLength);
      const stderr = this.buffer.subarray(newline + 1 + outLength, end);
      this.buffer = this.buffer.subarray(end);
      const pending = this.queue.shift();
      if (pending === undefined) {
        this.fail(`the remote shell on ${this.host} answered a command it was not sent`);
        return;
      }
      clearTimeout(pending.timer);
      pending.resolve({ code: Number(header[2]), stdout: Buffer.from(stdout), stderr: Buffer.from(stderr) });
    }
  }
}
