/**
 * admin.peek on NATS JetStream (BUSBAR_TEST_NATS_URL): positions are stream sequences, large messages come back whole
 * and their parts are not shown, a peek makes no consumer, bad positions are refused. The conformance suite
 * (scenario P1) checks that a peek consumes nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { streamName } from '../../src/transports/nats/names.ts';
import { freshType, message, NATS_URL, natsConfig, open, skipReason, tempType } from './nats-helpers.ts';

const skip = await skipReason();

describe('nats admin.peek', { skip, timeout: 120_000 }, () => {
  test('shows stream sequences, joins large messages, skips their parts, makes no consumer', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    const big = new Uint8Array(randomBytes(2 * 1024 * 1024 + 5));
    const sent = [message(type, 'small'), message(type, big), message(type, 'last')];
    for (const m of sent) await transport.publish(type, [m]);
    const all = await transport.admin.peek!(type, { count: 10 });
    assert.deepEqual(
      all.map((p) => p.message.id),
      sent.map((m) => m.id),
      'parts are not messages',
    );
    for (const p of all) assert.match(p.position, /^\d+$/);
    assert.ok(Buffer.from(all[1]!.message.body).equals(Buffer.from(big)), 'the large body comes back whole');
    // The parts are stored (first) between the first two heads: a peek from a part's sequence starts at the next head.
    assert.ok(Number(all[1]!.position) > Number(all[0]!.position) + 1);
    const page = await transport.admin.peek!(type, { from: String(Number(all[0]!.position) + 1), count: 10 });
    assert.deepEqual(
      page.map((p) => p.message.id),
      [sent[1]!.id, sent[2]!.id],
    );
    const nc = await connect({ servers: [...natsConfig(NATS_URL).endpoints] });
    try {
      const jsm = await jetstreamManager(nc);
      const consumers = [];
      for await (const c of jsm.consumers.list(streamName(type))) consumers.push(c.name);
      assert.deepEqual(consumers, [], 'a peek made a consumer');
    } finally {
      await nc.close();
    }
  });

  test('refuses a bad position with what to give instead; an unknown type shows nothing', async (t) => {
    const transport = await open(t);
    const type = tempType(transport);
    await transport.admin.ensureType(type);
    for (const from of ['0', '1-2', 'x']) {
      await assert.rejects(transport.admin.peek!(type, { from, count: 1 }), {
        code: 'BUSBAR_ERR_INVALID_ARGUMENT',
        message: /stream sequence/,
      });
    }
    assert.deepEqual(await transport.admin.peek!(freshType(), { count: 5 }), []);
  });
});
