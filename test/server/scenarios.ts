/**
 * The gateway's behaviour over a real socket, run against each broker in BROKERS_UNDER_TEST: publish (single and
 * batch, byte-exact), pull with leases and their expiry, ack / nack with delay, receipts bound to their group,
 * autoAck, Idempotency-Key, two groups, Server-Sent Events, the CORTX routes, and admin / stats.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BrokerUnderTest, call, fresh, gateway, pullAll, sleep } from './helpers.ts';

/** Reads Server-Sent Events from a fetch response until `count` `message` events arrived. */
async function readEvents(response: Response, count: number, timeoutMs = 10_000): Promise<unknown[]> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const events: unknown[] = [];
  let buffer = '';
  const deadline = Date.now() + timeoutMs;
  while (events.length < count) {
    if (Date.now() > deadline) throw new Error(`only ${events.length} of ${count} events in ${timeoutMs} ms`);
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split('\n');
      if (lines.includes('event: message')) {
        const data = lines.find((l) => l.startsWith('data: '));
        events.push(JSON.parse(data!.slice(6)));
      }
      end = buffer.indexOf('\n\n');
    }
  }
  reader.releaseLock();
  return events;
}

export function gatewayScenarios(broker: BrokerUnderTest): void {
  describe(`REST gateway on ${broker.name}`, async () => {
    const skip = await broker.skip();

    test('publishes single messages byte-exact with key and headers, and a batch', { skip }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      const bytes = new Uint8Array([0, 1, 2, 250, 255]);
      let a = await call(url, `/v1/types/${type}/messages?key=k1`, {
        body: 'héllo wörld',
        headers: { 'content-type': 'text/plain; charset=utf-8', 'busbar-header-trace': 'abc' },
      });
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.ids.length, 1);
      a = await call(url, `/v1/types/${type}/messages`, {
        body: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
      assert.equal(a.status, 200, a.text);
      a = await call(url, `/v1/types/${type}/messages`, {
        body: {
          messages: [
            { body: { n: 1, s: 'ü' }, key: 'k2', headers: { h: 'v' } },
            { body: 'plain text' },
            { body: Buffer.from('raw').toString('base64'), encoding: 'base64', contentType: 'image/png' },
          ],
        },
      });
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.ids.length, 3);

      const got = await pullAll(url, `/v1/types/${type}/messages?group=g&max=10&wait=2000`, 5);
      assert.equal(got.length, 5);
      const byBody = (pred: (m: { body: unknown }) => boolean) => got.find(pred);
      const text = byBody((m) => m.body === 'héllo wörld');
      assert.equal(text.key, 'k1');
      assert.equal(text.headers.trace, 'abc');
      assert.equal(text.contentType, 'text/plain; charset=utf-8');
      const bin = byBody((m) => m.body === Buffer.from(bytes).toString('base64'));
      assert.equal(bin.encoding, 'base64');
      const json = byBody((m) => typeof m.body === 'object' && m.body !== null);
      assert.deepEqual(json.body, { n: 1, s: 'ü' });
      assert.equal(json.key, 'k2');
      assert.deepEqual(json.headers, { h: 'v' });
      assert.equal(byBody((m) => m.body === 'plain text').contentType, 'text/plain; charset=utf-8');
      const png = byBody((m) => m.body === Buffer.from('raw').toString('base64'));
      assert.equal(png.contentType, 'image/png');
      for (const m of got) assert.equal(m.attempt, 1);

      const ack = await call(url, '/v1/acks', { body: { receipts: got.map((m) => m.receipt) } });
      assert.equal(ack.status, 200, ack.text);
      assert.equal(ack.json.acked, 5);
      const after = await call(url, `/v1/types/${type}/messages?group=g&wait=300`);
      assert.deepEqual(after.json.messages, []);
    });

    test('an unacked lease returns its message; stale receipts answer 410; acks are retry-safe', {
      skip,
    }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 'one' }] } });
      const first = await pullAll(url, `/v1/types/${type}/messages?group=g&lease=400&wait=2000`, 1);
      assert.equal(first.length, 1);
      // The response is "lost": nobody acks. After the lease the message is back, attempt 2.
      await sleep(700);
      const again = await pullAll(url, `/v1/types/${type}/messages?group=g&lease=5000&wait=3000`, 1);
      assert.equal(again.length, 1);
      assert.equal(again[0].id, first[0].id);
      assert.equal(again[0].attempt, 2);
      const stale = await call(url, '/v1/acks', { body: { receipts: [first[0].receipt] } });
      assert.equal(stale.status, 410, stale.text);
      assert.equal(stale.json.error.code, 'BUSBAR_ERR_INVALID_RECEIPT');
      const ok = await call(url, '/v1/acks', { body: { receipts: [again[0].receipt] } });
      assert.equal(ok.status, 200, ok.text);
      const retried = await call(url, '/v1/acks', { body: { receipts: [again[0].receipt] } });
      assert.equal(retried.status, 200, 'a retried ack (first answer lost) succeeds again');
      const conflict = await call(url, '/v1/nacks', { body: { receipts: [again[0].receipt] } });
      assert.equal(conflict.status, 409, conflict.text);
      const none = await call(url, `/v1/types/${type}/messages?group=g&wait=300`);
      assert.deepEqual(none.json.messages, []);
    });

    test('nack with delay redelivers after the delay with attempt 2', { skip }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      await call(url, `/v1/types/${type}/messages`, { body: 'x', headers: { 'content-type': 'text/plain' } });
      const [m] = await pullAll(url, `/v1/types/${type}/messages?group=g&wait=2000`, 1);
      const nackedAt = Date.now();
      const nack = await call(url, '/v1/nacks', { body: { receipts: [m.receipt], delayMs: 600 } });
      assert.equal(nack.status, 200, nack.text);
      assert.equal(nack.json.nacked, 1);
      const soon = await call(url, `/v1/types/${type}/messages?group=g&wait=200`);
      assert.deepEqual(soon.json.messages, []);
      const [back] = await pullAll(url, `/v1/types/${type}/messages?group=g&wait=3000`, 1);
      assert.ok(Date.now() - nackedAt >= 550, 'redelivered no sooner than the delay');
      assert.equal(back.id, m.id);
      assert.equal(back.attempt, 2);
      await call(url, '/v1/acks', { body: { receipts: [back.receipt] } });
    });

    test('receipts cannot be forged or used for another group; two groups each get all', { skip }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 1 }, { body: 2 }, { body: 3 }] } });
      const g1 = await pullAll(url, `/v1/types/${type}/messages?group=g1&max=10&wait=2000`, 3);
      const g2 = await pullAll(url, `/v1/types/${type}/messages?group=g2&max=10&wait=2000`, 3);
      assert.deepEqual(g1.map((m) => m.body).sort(), [1, 2, 3]);
      assert.deepEqual(g2.map((m) => m.body).sort(), [1, 2, 3]);
      const wrongGroup = await call(url, '/v1/acks', { body: { receipts: [g1[0].receipt], group: 'g2' } });
      assert.equal(wrongGroup.status, 409, wrongGroup.text);
      const receipt: string = g1[0].receipt;
      // keyId . pull (type, group, owner, pull id) . index . message id . tag: alter any part and it is refused.
      const [keyId, pull, index, id, tag] = receipt.split('.');
      const claims = JSON.parse(Buffer.from(pull!, 'base64url').toString());
      claims[1] = 'g2';
      const otherGroup = Buffer.from(JSON.stringify(claims)).toString('base64url');
      const other = g1[1].receipt.split('.');
      const alterations = {
        'another group': [keyId, otherGroup, index, id, tag],
        'another index': [keyId, pull, String(1 - Number(index)), id, tag],
        "another message's id": [keyId, pull, index, other[3], tag],
        "another message's tag": [keyId, pull, index, id, other[4]],
      };
      for (const [what, parts] of Object.entries(alterations)) {
        const forged = await call(url, '/v1/acks', { body: { receipts: [parts.join('.')] } });
        assert.equal(forged.status, 400, `${what}: ${forged.text}`);
        assert.equal(forged.json.error.code, 'BUSBAR_ERR_INVALID_RECEIPT');
      }
      for (const [g, list] of [
        ['g1', g1],
        ['g2', g2],
      ] as const) {
        const ok = await call(url, '/v1/acks', { body: { receipts: list.map((m) => m.receipt), group: g } });
        assert.equal(ok.status, 200, ok.text);
      }
    });

    test('autoAck pulls need no receipts; CORTX routes speak JSON with real statuses', { skip }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 'a' }] } });
      const [m] = await pullAll(url, `/v1/types/${type}/messages?group=g&autoAck=true&wait=2000`, 1);
      assert.equal(m.receipt, undefined);
      assert.deepEqual((await call(url, `/v1/types/${type}/messages?group=g&wait=300`)).json.messages, []);

      const cortx = fresh('cortx');
      const sent = await call(url, `/MessageBus/message/${cortx}`, {
        body: { messages: ['{"alert": 1}', { alert: 2 }] },
      });
      assert.equal(sent.status, 200, sent.text);
      assert.deepEqual(sent.json, { status_code: 200, status: 'success' });
      const received: unknown[] = [];
      for (let i = 0; i < 10 && received.length < 2; i++) {
        const r = await call(url, `/MessageBus/message/${cortx}?consumer_group=any-group&wait=1000`);
        assert.equal(r.status, 200, r.text);
        received.push(...r.json.messages);
      }
      assert.deepEqual(received.sort(), ['{"alert": 1}', { alert: 2 }].sort());
      const other = await call(url, `/MessageBus/message/${cortx}?consumer_group=another&wait=2000&max=5`);
      assert.equal(other.json.messages.length, 2, 'any group per request, each gets all');
      const bad = await call(url, `/MessageBus/message/${cortx}`, { body: { messages: 'nope' } });
      assert.equal(bad.status, 400);
      assert.match(bad.json.error.code, /^BUSBAR_ERR_/);
      const missing = await call(url, `/MessageBus/message/${cortx}`);
      assert.equal(missing.status, 400, 'consumer_group is required');
    });

    test('Idempotency-Key publishes once, also under concurrent retries', { skip }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      const send = (key: string, body: unknown) =>
        call(url, `/v1/types/${type}/messages`, { body, headers: { 'idempotency-key': key } });
      const a = await send('key-1', { messages: [{ body: 'a' }, { body: 'b' }] });
      const b = await send('key-1', { messages: [{ body: 'a' }, { body: 'b' }] });
      assert.equal(a.status, 200);
      assert.deepEqual(b.json, a.json);
      const concurrent = await Promise.all(
        Array.from({ length: 5 }, () => send('key-2', { messages: [{ body: 'c' }] })),
      );
      assert.equal(new Set(concurrent.map((r) => r.json.ids[0])).size, 1);
      const reused = await send('key-1', { messages: [{ body: 'different' }] });
      assert.equal(reused.status, 422, reused.text);
      assert.equal(reused.json.error.code, 'BUSBAR_ERR_IDEMPOTENCY_KEY');
      const got = await pullAll(url, `/v1/types/${type}/messages?group=g&max=50&wait=1000`, 4, 2);
      assert.deepEqual(got.map((m) => m.body).sort(), ['a', 'b', 'c']);
      await call(url, '/v1/acks', { body: { receipts: got.map((m) => m.receipt) } });
    });

    test('Server-Sent Events push messages with receipts and hold at most inflight unacked', { skip }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      await call(url, `/v1/types/${type}/messages`, {
        body: { messages: Array.from({ length: 5 }, (_, i) => ({ body: { i } })) },
      });
      const controller = new AbortController();
      t.after(() => controller.abort());
      const response = await fetch(`${url}/v1/types/${type}/stream?group=g&inflight=3`, { signal: controller.signal });
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
      // biome-ignore lint/suspicious/noExplicitAny: wire messages
      const firstThree = (await readEvents(response, 3)) as any[];
      assert.equal(firstThree.length, 3);
      const ack = await call(url, '/v1/acks', { body: { receipts: firstThree.map((m) => m.receipt) } });
      assert.equal(ack.status, 200, ack.text);
      // biome-ignore lint/suspicious/noExplicitAny: wire messages
      const rest = (await readEvents(response, 2)) as any[];
      const all = [...firstThree, ...rest].map((m) => m.body.i).sort();
      assert.deepEqual(all, [0, 1, 2, 3, 4]);
      await call(url, '/v1/acks', { body: { receipts: rest.map((m) => m.receipt) } });
      controller.abort();
    });

    test('admin: register with partitions, list, stats with groups and rates, purge, deregister, metrics', {
      skip,
    }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      const put = await call(url, `/v1/types/${type}`, { method: 'PUT', body: { partitions: 2 } });
      assert.equal(put.status, 200, put.text);
      assert.equal(put.json.type, type);
      const list = await call(url, '/v1/types');
      assert.ok(list.json.types.some((x: { type: string }) => x.type === type));
      await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 1 }, { body: 2 }] } });
      const [m] = await pullAll(url, `/v1/types/${type}/messages?group=g&max=1&wait=2000`, 1);
      assert.ok(m);
      const stats = await call(url, `/v1/types/${type}/stats`);
      assert.equal(stats.status, 200, stats.text);
      assert.equal(stats.json.depth, 2);
      const group = stats.json.groups.find((g: { group: string }) => g.group === 'g');
      assert.equal(group.unread, 2);
      assert.equal(group.leased, 1);
      assert.ok(stats.json.publishedPerSec > 0);
      const metrics = await call(url, '/metrics');
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, new RegExp(`busbar_type_depth\\{type="${type}"\\} 2`));
      assert.match(metrics.text, new RegExp(`busbar_gateway_published_total\\{type="${type}"\\} 2`));
      await call(url, '/v1/acks', { body: { receipts: [m.receipt] } });
      const purge = await call(url, `/v1/types/${type}/purge`, { method: 'POST' });
      assert.equal(purge.status, 200, purge.text);
      assert.equal((await call(url, `/v1/types/${type}/stats`)).json.depth, 0);
      const del = await call(url, `/v1/types/${type}`, { method: 'DELETE' });
      assert.equal(del.status, 200, del.text);
      const after = await call(url, '/v1/types');
      assert.ok(!after.json.types.some((x: { type: string }) => x.type === type));
      assert.equal((await call(url, '/healthz')).status, 200);
      assert.equal((await call(url, '/readyz')).status, 200);
    });

    test('a group created ahead of its first reader keeps what is sent before it pulls', { skip }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      const created = await call(url, `/v1/types/${type}/groups/early`, { method: 'PUT', body: {} });
      assert.equal(created.status, 200, created.text);
      assert.deepEqual(created.json, { type, group: 'early', offset: 'latest' });
      const again = await call(url, `/v1/types/${type}/groups/early`, { method: 'PUT', body: { offset: 'earliest' } });
      assert.equal(again.status, 200, `creating a group again is idempotent: ${again.text}`);
      const bad = await call(url, `/v1/types/${type}/groups/early`, { method: 'PUT', body: { offset: 'middle' } });
      assert.equal(bad.status, 400, bad.text);
      await call(url, `/v1/types/${type}/messages`, { body: { messages: [{ body: 1 }, { body: 2 }] } });
      // offset=latest would start a new group after these two: only a group that already exists gets them.
      const got = await pullAll(url, `/v1/types/${type}/messages?group=early&offset=latest&max=10&wait=2000`, 2);
      assert.deepEqual(got.map((m) => m.body).sort(), [1, 2]);
      await call(url, '/v1/acks', { body: { receipts: got.map((m) => m.receipt) } });
    });

    test('typos fail loudly: a shrink is 409; delete, purge, pull, stream and CORTX GET of an unknown type are 404', {
      skip,
    }, async (t) => {
      const { url } = await gateway(t, broker);
      const type = fresh('t');
      const register = (partitions: number) => call(url, `/v1/types/${type}`, { method: 'PUT', body: { partitions } });
      assert.equal((await register(2)).status, 200);
      const grown = await register(4);
      assert.equal(grown.status, 200, grown.text);
      assert.equal(grown.json.partitions, 4);
      const shrink = await register(1);
      assert.equal(shrink.status, 409, shrink.text);
      assert.equal(shrink.json.error.code, 'BUSBAR_ERR_PARTITIONS');
      const same = await register(4);
      assert.equal(same.status, 200, same.text);
      assert.equal(same.json.partitions, 4);
      const bare = await call(url, `/v1/types/${fresh('bare')}`, { method: 'PUT' });
      assert.equal(bare.status, 200, `a PUT without a body registers: ${bare.text}`);
      const dlq = await call(url, `/v1/types/${type}.dlq/messages?group=g&wait=0`);
      assert.equal(dlq.status, 200, `the dead-letter type of a known type is known: ${dlq.text}`);

      const ghost = fresh('ghost');
      const answers = {
        delete: await call(url, `/v1/types/${ghost}`, { method: 'DELETE' }),
        purge: await call(url, `/v1/types/${ghost}/purge`, { method: 'POST' }),
        pull: await call(url, `/v1/types/${ghost}/messages?group=g&wait=0`),
        stream: await call(url, `/v1/types/${ghost}/stream?group=g`),
        cortx: await call(url, `/MessageBus/message/${ghost}?consumer_group=g&wait=0`),
        stats: await call(url, `/v1/types/${ghost}/stats`),
      };
      for (const [what, answer] of Object.entries(answers)) {
        assert.equal(answer.status, 404, `${what}: ${answer.status} ${answer.text}`);
        assert.equal(answer.json.error.code, 'BUSBAR_ERR_UNKNOWN_TYPE', what);
      }
      const list = await call(url, '/v1/types');
      assert.ok(!list.json.types.some((x: { type: string }) => x.type === ghost), `${ghost} was created`);
    });
  });
}
