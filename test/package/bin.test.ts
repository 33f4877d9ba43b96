/**
 * bin/busbar.js runs the sources whenever they are there (a clone), even beside a dist/ built earlier and maybe stale,
 * and runs dist/ only where the sources are absent (the installed package).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const dir = mkdtempSync(join(tmpdir(), 'busbar-bin-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A package tree with the real bin and a main() in each place that says where it runs from. */
function tree(withSources: boolean): string {
  const root = mkdtempSync(join(dir, 'pkg-'));
  mkdirSync(join(root, 'bin'));
  copyFileSync(fileURLToPath(new URL('../../bin/busbar.js', import.meta.url)), join(root, 'bin', 'busbar.js'));
  writeFileSync(join(root, 'package.json'), '{"type": "module"}');
  const main = (from: string) => `export async function main(argv) { console.log('${from}', ...argv); return 0; }\n`;
  mkdirSync(join(root, 'dist', 'cli'), { recursive: true });
  writeFileSync(join(root, 'dist', 'cli', 'main.js'), main('dist'));
  if (withSources) {
    mkdirSync(join(root, 'src', 'cli'), { recursive: true });
    writeFileSync(join(root, 'src', 'cli', 'main.ts'), main('sources'));
  }
  return root;
}

function runBin(root: string): string {
  const result = spawnSync(process.execPath, [join(root, 'bin', 'busbar.js'), '--version'], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}

test('a clone runs its sources even when a dist/ is there', () => {
  assert.equal(runBin(tree(true)), 'sources --version\n');
});

test('an installed package (no sources) runs dist/', () => {
  assert.equal(runBin(tree(false)), 'dist --version\n');
});

test('busbar --version, -v and version print the version in package.json', () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-v', 'version']) {
    const result = spawnSync(process.execPath, [join(root, 'bin', 'busbar.js'), flag], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, `${version}\n`);
  }
});
