#!/usr/bin/env node
// Runs the TypeScript sources whenever they are here (a clone), so a dist/ left from an earlier build is never run
// silently; runs the built dist/ only where the sources are absent (the package installed from a tarball).
import { existsSync } from 'node:fs';

const sources = new URL('../src/cli/main.ts', import.meta.url);
const fromSources = existsSync(sources);

// An older Node would fail below with a stack trace about node:sqlite or '.ts' files; say what to do instead.
// The same range as package.json `engines` (see src/transports/embedded/sqlite.ts for why).
const [major, minor] = process.versions.node.split('.').map(Number);
const supported = major === 22 ? minor >= 20 : major === 24 ? minor >= 7 : major > 24;
if (!supported || (fromSources && !process.features.typescript)) {
  const need = supported ? 'a Node.js that runs TypeScript sources (type stripping on)' : 'Node.js 22.20+ or 24.7+';
  process.stderr.write(
    `busbar: this is Node.js ${process.version}; busbar needs ${need}. Install Node.js 24 LTS, or in a clone run ` +
      'busbar through npm (`npx busbar ...`, `npm start`), which uses the Node.js 24 the project pins ' +
      '(BUSBAR_ERR_UNSUPPORTED)\n',
  );
  process.exit(2);
}

const entry = fromSources ? sources : new URL('../dist/cli/main.js', import.meta.url);
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2), { out: process.stdout, stdin: process.stdin });
