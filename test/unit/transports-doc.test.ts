import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DOC, matrix, splice } from '../../scripts/docs/transports.ts';

test('docs/transports.md shows the capabilities declared in code (run node scripts/docs/transports.ts)', async () => {
  const doc = readFileSync(DOC, 'utf8');
  assert.equal(doc, splice(doc, await matrix()));
});
