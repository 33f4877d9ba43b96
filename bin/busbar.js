#!/usr/bin/env node
// Runs the built CLI when installed from the registry, or the TypeScript sources directly in a clone.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
const fromSources = !existsSync(built);

// An old Node would fail below with a stack trace about '.ts' files or node:sqlite; say what to do instead.
const [major, minor] = process.versions.node.split('.').map(Number);
const tooOld = major < 22 || (major === 22 && minor < 13);
if (tooOld || (fromSources && !process.features.typescript)) {
  const need = tooOld ? 'Node.js >= 22.13' : 'a Node.js that runs TypeScript sources (>= 22.18 or 23.6)';
  process.stderr.write(
    `busbar: this is Node.js ${process.version}; busbar needs ${need}. Install Node.js 24 LTS, or in a clone run ` +
      'busbar through npm (`npx busbar ...`, `npm start`), which uses the Node.js 24 the project pins ' +
      '(BUSBAR_ERR_UNSUPPORTED)\n',
  );
  process.exit(2);
}

const entry = fromSources ? new URL('../src/cli/main.ts', import.meta.url) : built;
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2), { out: process.stdout, stdin: process.stdin });
