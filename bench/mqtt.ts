/**
 * mqtt transport vs raw MQTT.js doing the same work at the same durability (QoS 1, every PUBACK awaited; the same
 * Content Type and user properties), on a private Mosquitto this file starts (max_queued_messages 0, so the consume
 * reservoir is not cut at Mosquitto's default 1000), or on BUSBAR_BENCH_MQTT_URL.
 * - `publish 100B x100`: one awaited publish() of 100 messages at a time, vs 100 raw publishes awaited together.
 * - `publish 100B x1`: one message per awaited publish(), vs one awaited raw publish at a time.
 * - `consume+ack 100B`: one group member (Receive Maximum = prefetch 256) acking every message, vs a raw client with
 *   the same Receive Maximum whose PUBACK goes out when its message handler is done (MQTT.js's default).
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import type { Delivery, Subscription, Transport, TransportMessage } from '../src/transport/contract.ts';
import createMqttTransport from '../src/transports/mqtt/index.ts';
import { publishProperties } from '../src/transports/mqtt/wire.ts';
import { PrivateMosquitto } from '../test/transports/mqtt-broker.ts';
import type { BenchCase } from './harness.ts';

const MESSAGES = 10_000;
const SINGLES = 2_000;
const CONSUMED = 5_000;
const BATCH = 100;
const PREFETCH = 256;
const BODY = new Uint8Array(100).fill(0x61);
/** Rounds' worth of messages queued ahead for the consume case (warm-up + 5 rounds + spare). */
const RESERVOIR_ROUNDS = 8;

function batchOf(type: string, size = BATCH): TransportMessage[] {
  const time = new Date().toISOString();
  return Array.from({ length: size }, () => ({
    id: randomUUID(),
    type,
    source: 'bench',
    time,
    contentType: 'application/octet-stream',
    headers: {},
    body: BODY,
  }));
}

/** What a plain client sends for the same message, following docs/wire/mqtt.md. */
function rawPublish(raw: MqttClient, topic: string, message: TransportMessage): Promise<unknown> {
  const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength);
  return raw.publishAsync(topic, body, { qos: 1, properties: publishProperties(message) });
}

/** busbar turns Nagle's algorithm off on its connections; the raw side gets the same, so only the code differs. */
function noDelay(client: MqttClient): void {
  (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
}

export default async function cases(): Promise<BenchCase[]> {
  let broker: PrivateMosquitto | undefined;
  let url = process.env.BUSBAR_BENCH_MQTT_URL;
  let transport: Transport;
  let raw: MqttClient;
  const type = `bench-${randomUUID()}`;
  const rawType = `bench-raw-${randomUUID()}`;

  const setup = async () => {
    if (!url) {
      broker = await PrivateMosquitto.start();
      url = broker.url;
    }
    transport = await createMqttTransport({ url, endpoints: [url.slice('mqtt://'.length)], options: {} });
    raw = await mqtt.connectAsync(url, { protocolVersion: 5 });
    noDelay(raw);
  };
  const teardown = async () => {
    await transport.close();
    await raw.endAsync();
    if (broker) {
      await broker.stop();
      broker = undefined;
      url = process.env.BUSBAR_BENCH_MQTT_URL;
    }
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'mqtt',
    messages: MESSAGES,
    setup,
    teardown,
    async subject() {
      const latencies: number[] = [];
      for (let done = 0; done < MESSAGES; done += BATCH) {
        const batch = batchOf(type);
        const start = performance.now();
        await transport.publish(type, batch);
        latencies.push(performance.now() - start);
      }
      return latencies;
    },
    async baseline() {
      for (let done = 0; done < MESSAGES; done += BATCH) {
        await Promise.all(batchOf(rawType).map((m) => rawPublish(raw, `busbar/${rawType}`, m)));
      }
      return undefined;
    },
  };

  const single: BenchCase = {
    name: 'publish 100B x1',
    transport: 'mqtt',
    messages: SINGLES,
    setup,
    teardown,
    async subject() {
      const latencies: number[] = [];
      for (let done = 0; done < SINGLES; done++) {
        const batch = batchOf(type, 1);
        const start = performance.now();
        await transport.publish(type, batch);
        latencies.push(performance.now() - start);
      }
      return latencies;
    },
    async baseline() {
      for (let done = 0; done < SINGLES; done++) await rawPublish(raw, `busbar/${rawType}`, batchOf(rawType, 1)[0]!);
      return undefined;
    },
  };

  let subscription: Subscription;
  let deliveries: AsyncIterator<Delivery>;
  let consumer: MqttClient;
  let rawLeft = 0;
  let roundDone: () => void = () => {};
  const held: (() => void)[] = [];

  const consume: BenchCase = {
    name: 'consume+ack 100B',
    transport: 'mqtt',
    messages: CONSUMED,
    async setup() {
      await setup();
      const group = `g-${randomUUID()}`;
      subscription = transport.consume({
        types: [type],
        group,
        consumerId: 'bench',
        offset: 'earliest',
        prefetch: PREFETCH,
        ackTimeoutMs: 600_000,
      });
      await subscription.ready;
      deliveries = subscription[Symbol.asyncIterator]();
      // The raw member holds back the PUBACK of messages beyond the current round, as busbar's does by not acking.
      consumer = mqtt.connect(url!, {
        protocolVersion: 5,
        clientId: `bench-raw-${randomUUID()}`,
        clean: false,
        properties: { sessionExpiryInterval: 600, receiveMaximum: PREFETCH },
      });
      consumer.handleMessage = (_packet, done) => {
        if (rawLeft === 0) {
          held.push(done);
          return;
        }
        done();
        if (--rawLeft === 0) roundDone();
      };
      await new Promise((resolve) => consumer.once('connect', resolve));
      noDelay(consumer);
      await consumer.subscribeAsync(`$share/${group}-raw/busbar/${rawType}`, { qos: 1 });
      for (let i = 0; i < (CONSUMED * RESERVOIR_ROUNDS) / BATCH; i++) {
        await transport.publish(type, batchOf(type));
        await Promise.all(batchOf(rawType).map((m) => rawPublish(raw, `busbar/${rawType}`, m)));
      }
    },
    async teardown() {
      await subscription.close();
      await consumer.endAsync(true);
      await teardown();
    },
    async subject() {
      for (let count = 0; count < CONSUMED; count++) {
        const next = await deliveries.next();
        if (next.done) throw new Error('the subscription ended early');
        void next.value.ack();
      }
      return undefined;
    },
    async baseline() {
      const finished = new Promise<void>((resolve) => {
        roundDone = resolve;
      });
      rawLeft = CONSUMED;
      while (held.length && rawLeft > 0) {
        held.shift()!();
        if (--rawLeft === 0) roundDone();
      }
      await finished;
      return undefined;
    },
  };

  return [publish, single, consume];
}
