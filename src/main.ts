import { runCli } from './cli.js';

// Entry point of the `relayplane` command. `serve` keeps the process alive until a signal;
// every other command ends with its exit code.
const code = await runCli(process.argv);
if (process.argv[2] !== 'serve' || code !== 0) process.exit(code);
