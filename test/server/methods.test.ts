/**
 * A known path asked with a method it does not take answers 405 with `Allow` and a JSON error, for every route the
 * gateway documents in /openapi.json; an unknown path stays a 404.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { call, gateway } from './helpers.ts';

const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'];

test('a wrong method on any route is 405 with the route methods in Allow; an unknown path is 404', async (t) => {
  const { url } = await gateway(t);
  const openapi = await call(url, '/openapi.json');
  assert.equal(openapi.status, 200);
  const paths = Object.entries(openapi.json.paths as Record<string, Record<string, unknown>>);
  assert.ok(paths.length > 10, 'the document lists the routes');
  for (const [template, operations] of paths) {
    const path = template.replace(/\{[^}]+\}/g, 'some-name');
    const allowed = Object.keys(operations).map((m) => m.toUpperCase());
    const expected = [...new Set([...allowed, ...(allowed.includes('GET') ? ['HEAD'] : [])])].sort();
    for (const method of METHODS.filter((m) => !allowed.includes(m))) {
      const answer = await call(url, path, { method });
      assert.equal(answer.status, 405, `${method} ${path}: ${answer.status} ${answer.text}`);
      assert.deepEqual(answer.headers.get('allow')?.split(', '), expected, `${method} ${path}`);
      assert.equal(answer.json.error.code, 'BUSBAR_ERR_METHOD_NOT_ALLOWED', `${method} ${path}`);
    }
  }
  const missing = await call(url, '/v1/no-such-thing', { method: 'DELETE' });
  assert.equal(missing.status, 404);
  assert.equal(missing.json.error.code, 'BUSBAR_ERR_NOT_FOUND');
});
