/**
 * mqtt vs raw MQTT.js at the same durability (QoS 1, every PUBACK awaited; the same Content Type and user
 * properties, docs/wire/mqtt.md), on a private Mosquitto each case starts (max_queued_messages 0, so a consume
 * reservoir is not cut at Mosquitto's default 1000), or on BUSBAR_BENCH_MQTT_URL. Both sides turn Nagle's algorithm
 * off. The raw side publishes a batch as concurrent publishAsync() calls awaited together. Its group member is a
 * persistent session on the group's shared subscription with the same Receive Maximum as busbar's prefetch; its
 * PUBACK goes out when its message handler is done (MQTT.js's default), and it holds back the PUBACKs of messages
 * beyond the current round, as busbar's side leaves them unacked. MQTT does not confirm a PUBACK, so awaiting an ack
 * is moot on the raw side.
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import type { TransportMessage } from '../src/transport/contract.ts';
import { publishProperties } from '../src/transports/mqtt/wire.ts';
import { PrivateMosquitto } from '../test/transports/mqtt-broker.ts';
import type { Tally } from './lib/case.ts';
import { type RawClient, transportBench, transportCases } from './lib/transport-bench.ts';

const topicOf = (type: string) => `busbar/${type}`;

/** busbar turns Nagle's algorithm off on its connections; the raw side gets the same, so only the code differs. */
function noDelay(client: MqttClient): void {
  (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
}

/** A raw group member that PUBACKs only as many messages as the current round asks for. */
class RawMember {
  readonly client: MqttClient;
  readonly #held: (() => void)[] = [];
  #left = 0;
  #tally: Tally | undefined;
  #roundDone: () => void = () => {};

  constructor(url: string, prefetch: number) {
    this.client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: `bench-raw-${randomUUID()}`,
      clean: false,
      properties: { sessionExpiryInterval: 600, receiveMaximum: prefetch },
    });
    this.client.handleMessage = (_packet, done) => {
      if (this.#left === 0) this.#held.push(done);
      else this.#take(done);
    };
  }

  #take(done: () => void): void {
    done();
    this.#tally?.count();
    if (--this.#left === 0) this.#roundDone();
  }

  async join(type: string, group: string): Promise<void> {
    await new Promise((resolve) => this.client.once('connect', resolve));
    noDelay(this.client);
    await this.client.subscribeAsync(`$share/${group}/${topicOf(type)}`, { qos: 1 });
  }

  round(count: number, tally: Tally): Promise<void> {
    const finished = new Promise<void>((resolve) => {
      this.#roundDone = resolve;
    });
    this.#tally = tally;
    this.#left = count;
    while (this.#held.length > 0 && this.#left > 0) this.#take(this.#held.shift()!);
    return finished;
  }
}

async function connectRaw(url: string) {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5 });
  noDelay(client);
  const members = new Map<string, RawMember>();
  return {
    async publish(type: string, messages: TransportMessage[]) {
      await Promise.all(
        messages.map((m) =>
          client.publishAsync(topicOf(type), Buffer.from(m.body.buffer, m.body.byteOffset, m.body.byteLength), {
            qos: 1,
            properties: publishProperties(m),
          }),
        ),
      );
    },
    async createGroup(type, group, { prefetch }) {
      const member = new RawMember(url, prefetch);
      members.set(`${type}/${group}`, member);
      await member.join(type, group);
    },
    async consume(type, group, count, tally) {
      const member = members.get(`${type}/${group}`);
      if (!member) throw new Error(`no raw member for ${type}/${group}: createGroup first`);
      await member.round(count, tally);
    },
    async close() {
      for (const member of members.values()) await member.client.endAsync(true);
      await client.endAsync();
    },
  } satisfies RawClient;
}

export const bench = transportBench({
  transport: 'mqtt',
  async url(cleanup) {
    if (process.env.BUSBAR_BENCH_MQTT_URL) return process.env.BUSBAR_BENCH_MQTT_URL;
    const broker = await PrivateMosquitto.start();
    cleanup.add(() => broker.stop());
    return broker.url;
  },
  connectRaw,
  prefetch: 256,
  persistentMembers: true,
});

export default async function cases() {
  return transportCases(bench);
}
