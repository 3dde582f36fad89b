/**
 * Where a lab node's CPU goes, by command name: `perf record` (Debian's linux-perf) samples the
 * CPU clock of the given processes and of every process they start while `fn` runs. perf attaches
 * with its events off and is switched on and off through its control FIFO, each switch
 * acknowledged, so the samples cover `fn` and nothing else.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const SAMPLE_HZ = 4000;

/** Sends a control word and waits for perf's `ack`. */
async function control(ctl: FileHandle, ack: FileHandle, word: 'enable' | 'disable'): Promise<void> {
  await ctl.write(`${word}\n`);
  const buf = Buffer.alloc(16);
  let got = '';
  while (!got.includes('ack')) {
    const { bytesRead } = await ack.read(buf, 0, buf.length, null);
    if (bytesRead === 0) throw new Error(`perf did not acknowledge ${word}`);
    got += buf.subarray(0, bytesRead).toString('latin1');
  }
}

/** CPU ms by command name while `fn` ran; null where perf does not run (fn runs all the same). */
export async function cpuByCommand(pids: number[], fn: () => Promise<void>): Promise<Map<string, number> | null> {
  if (pids.length === 0 || spawnSync('perf', ['--version'], { stdio: 'ignore' }).status !== 0) {
    await fn();
    return null;
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rp-bench-perf-'));
  const [ctl, ack, data] = ['ctl', 'ack', 'perf.data'].map((f) => path.join(dir, f)) as [string, string, string];
  try {
    if (spawnSync('mkfifo', [ctl, ack]).status !== 0) throw new Error(`mkfifo ${ctl} ${ack} failed`);
    const perf = spawn(
      'perf',
      // -D -1: attached with the events off, until `enable` comes through the control FIFO.
      [
        'record',
        '-q',
        '-e',
        'cpu-clock',
        '-F',
        String(SAMPLE_HZ),
        '-D',
        '-1',
        '--control',
        `fifo:${ctl},${ack}`,
        '-o',
        data,
        '-p',
        pids.join(','),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    const exited = once(perf, 'exit');
    // Each open waits for perf to open the other end.
    const [ctlFile, ackFile] = await Promise.race([
      Promise.all([open(ctl, 'w'), open(ack, 'r')]),
      exited.then(() => {
        throw new Error('perf record exited before it was switched on');
      }),
    ]);
    try {
      await control(ctlFile, ackFile, 'enable');
      await fn();
      await control(ctlFile, ackFile, 'disable');
    } finally {
      perf.kill('SIGINT');
      await exited;
      await ctlFile.close();
      await ackFile.close();
    }
    const report = execFileSync('perf', ['report', '-i', data, '--sort', 'comm', '-n', '--stdio', '-q'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const byCommand = new Map<string, number>();
    // "    20.55%          1234  sh"
    for (const m of report.matchAll(/^\s*[\d.]+%\s+(\d+)\s+(.+?)\s*$/gm)) {
      byCommand.set(m[2]!, (byCommand.get(m[2]!) ?? 0) + (Number(m[1]) * 1000) / SAMPLE_HZ);
    }
    return byCommand;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
