import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Admin, MessageBus, Producer, resolveConfig } from '../../src/index.ts';
import { loadTransport } from '../../src/transport/registry.ts';

const root = join(import.meta.dirname, '..', '..');

/** `owner.name` references in one table cell, e.g. `admin.purge(type)` -> [['admin', 'purge']]. */
function calls(cell: string): [string, string][] {
  return [...cell.matchAll(/`(\w+)\.(\w+)/g)].map((m) => [m[1]!, m[2]!]);
}

test('docs/api.md names only calls that exist, in the library and in the transport contract', async (t) => {
  const rows = readFileSync(join(root, 'docs/api.md'), 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| act') && !line.startsWith('| ---'))
    .map((line) => line.split(' | '));
  assert.ok(rows.length >= 8, 'the table of acts is missing');
  const config = resolveConfig('memory:');
  const transport = await (await loadTransport(config.scheme))(config.transport);
  t.after(() => transport.close());
  const library: Record<string, object> = {
    bus: MessageBus.prototype,
    admin: Admin.prototype,
    producer: Producer.prototype,
  };
  for (const row of rows) {
    const contract = row.at(-1)!;
    for (const [owner, name] of calls(row[1]!)) {
      assert.ok(owner in library && name in library[owner]!, `library column: ${owner}.${name} does not exist`);
    }
    for (const [owner, name] of calls(contract)) {
      assert.equal(owner, 'admin', `contract column: ${owner}.${name}`);
      assert.equal(typeof (transport.admin as unknown as Record<string, unknown>)[name], 'function', `admin.${name}`);
    }
    for (const [, name] of contract.matchAll(/`(\w+)[(`]/g)) {
      assert.ok(name! in transport, `contract column: transport.${name} does not exist`);
    }
  }
});
