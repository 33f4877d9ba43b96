#!/usr/bin/env node
// Runs the built CLI when installed from the registry, or the TypeScript sources directly in a clone.
import { existsSync } from 'node:fs';

const built = new URL('../dist/cli/main.js', import.meta.url);
const entry = existsSync(built) ? built : new URL('../src/cli/main.ts', import.meta.url);
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2), { out: process.stdout, stdin: process.stdin });
