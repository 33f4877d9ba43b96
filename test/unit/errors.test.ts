import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { BusError, ERROR_CODES } from '../../src/errors.ts';

const root = new URL('../../', import.meta.url).pathname;

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

test('docs/errors.md documents exactly the codes in src/errors.ts', () => {
  const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8');
  const documented = [...doc.matchAll(/^## (BUSBAR_ERR_[A-Z0-9_]+)$/gm)].map((m) => m[1]!).sort();
  assert.deepEqual(documented, Object.keys(ERROR_CODES).sort());
});

test('every code used in src/ is defined in the catalogue', () => {
  const used = new Set(
    sources(join(root, 'src')).flatMap((f) => readFileSync(f, 'utf8').match(/BUSBAR_ERR_[A-Z0-9_]+/g) ?? []),
  );
  const unknown = [...used].filter((code) => !(code in ERROR_CODES));
  assert.deepEqual(unknown, [], `codes used but not defined: ${unknown.join(', ')}`);
});

test('BusError carries code, retryable and cause', () => {
  const cause = new Error('socket hang up');
  const error = new BusError('BUSBAR_ERR_CONNECTION', 'broker unreachable', { cause });
  assert.equal(error.code, 'BUSBAR_ERR_CONNECTION');
  assert.equal(error.retryable, true);
  assert.equal(error.cause, cause);
  assert.equal(error.isUsageError, false);
  assert.equal(new BusError('BUSBAR_ERR_USAGE', 'x').isUsageError, true);
  assert.equal(new BusError('BUSBAR_ERR_PUBLISH', 'x', { retryable: false }).retryable, false);
});
