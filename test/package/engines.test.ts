/**
 * package.json `engines` and the embedded broker's node:sqlite check name the same Node.js releases (pack.test.ts runs
 * bin/busbar.js's check at both edges): those whose node:sqlite binds `?NNN` parameters by position. Measured:
 * 22.19.0 and 24.6.0 fail with "column index out of range", 22.20.0 and 24.7.0 work, 23.x lacks setReturnArrays.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SQLITE_NODE_VERSIONS, sqliteSupported } from '../../src/transports/embedded/sqlite.ts';

const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  engines: { node: string };
};

test('engines claims exactly the releases the embedded broker runs on', () => {
  assert.equal(manifest.engines.node, SQLITE_NODE_VERSIONS);
  const cases: Array<[string, boolean]> = [
    ['20.20.2', false],
    ['22.13.1', false],
    ['22.19.0', false],
    ['22.20.0', true],
    ['22.23.3', true],
    ['23.11.1', false],
    ['24.6.0', false],
    ['24.7.0', true],
    ['24.21.0', true],
    ['25.0.0', true],
  ];
  for (const [version, supported] of cases) assert.equal(sqliteSupported(version), supported, version);
});
