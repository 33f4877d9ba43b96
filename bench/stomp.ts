/**
 * stomp transport vs raw @stomp/stompjs doing the same work on the same Artemis (BUSBAR_TEST_STOMP_URL, default
 * stomp://busbar:busbar@127.0.0.1:61613), same frames (docs/wire/stomp.md: persistent SENDs with the same headers,
 * each with a receipt; ACKs with a receipt), same group queue:
 * - `publish 100B x100`: one awaited publish() of 100 at a time, vs 100 SENDs then waiting for their 100 receipts.
 * - `publish 100B x100, 8 concurrent`: 8 publishers at once on one transport, vs 8 such loops on one connection.
 * - `consume+ack 100B`: one consumer (prefetch 100), acking every message, vs a raw client-individual subscription
 *   with the same consumer-window-size acking every message with a receipt.
 * Every published message stays in the group queue until teardown, and the test broker.xml never pages: run it on a
 * broker with a larger heap, e.g. BUSBAR_ARTEMIS_HEAP=1500m scripts/brokers/artemis start --instance 4 and
 * BUSBAR_TEST_STOMP_URL=stomp://busbar:busbar@127.0.0.1:61643 (the default 384 MiB runs out of memory).
 */
import { randomUUID } from 'node:crypto';
import { Client, type IMessage } from '@stomp/stompjs';
import { TCPWrapper } from '@stomp/tcp-wrapper';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import createStompTransport from '../src/transports/stomp/index.ts';
import { DEFAULT_WINDOW_BYTES_PER_MESSAGE } from '../src/transports/stomp/options.ts';
import { fqqnOf, sendHeaders } from '../src/transports/stomp/wire.ts';
import type { BenchCase } from './harness.ts';

const URL = process.env.BUSBAR_TEST_STOMP_URL ?? 'stomp://busbar:busbar@127.0.0.1:61613';
const MESSAGES = 2_000;
const BATCH = 100;
const PREFETCH = 100;
const BODY = new Uint8Array(100).fill(0x61);
const CONSUMED = 2_000;

const parsed = new globalThis.URL(URL.replace(/^stomp/, 'http'));
const host = parsed.hostname;
const port = Number(parsed.port || 61613);

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

/** A raw stompjs client on plain TCP, as its README shows, resolving RECEIPTs by id. */
class Raw {
  readonly client: Client;
  readonly #receipts = new Map<string, () => void>();
  #next = 0;

  constructor() {
    this.client = new Client({
      webSocketFactory: () => new TCPWrapper(host, port),
      connectHeaders: { login: decodeURIComponent(parsed.username), passcode: decodeURIComponent(parsed.password) },
      reconnectDelay: 0,
      onUnhandledReceipt: (frame) => {
        const id = frame.headers['receipt-id']!;
        this.#receipts.get(id)?.();
        this.#receipts.delete(id);
      },
    });
  }

  start(): Promise<void> {
    return new Promise((resolve) => {
      this.client.onConnect = () => resolve();
      this.client.activate();
    });
  }

  receipt(): { id: string; done: Promise<void> } {
    const id = `raw-${++this.#next}`;
    return { id, done: new Promise<void>((resolve) => this.#receipts.set(id, resolve)) };
  }

  async publish(type: string, count: number): Promise<void> {
    for (let done = 0; done < count; done += BATCH) {
      const confirmed: Promise<void>[] = [];
      for (const message of batchOf(type)) {
        const { id, done: receipt } = this.receipt();
        confirmed.push(receipt);
        this.client.publish({
          destination: type,
          headers: { 'destination-type': 'MULTICAST', ...sendHeaders(message), receipt: id },
          binaryBody: message.body,
        });
      }
      await Promise.all(confirmed);
    }
  }
}

export default async function cases(): Promise<BenchCase[]> {
  let transport: Transport;
  let raw: Raw;
  const type = `bench-${randomUUID().slice(0, 8)}`;
  const group = `g-${randomUUID().slice(0, 8)}`;

  const setup = async () => {
    transport = await createStompTransport({
      url: URL,
      endpoints: [`${host}:${port}`],
      username: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      options: {},
    });
    // The group queue exists before anything is published, so both sides store every message alike.
    const subscription = transport.consume({
      types: [type],
      group,
      consumerId: 'bench',
      offset: 'latest',
      prefetch: 1,
      ackTimeoutMs: 60_000,
    });
    await subscription.ready;
    await subscription.close();
    raw = new Raw();
    await raw.start();
  };
  const teardown = async () => {
    await raw.client.deactivate().catch(() => {});
    await transport.admin.deleteType(type);
    await transport.close();
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'stomp',
    messages: MESSAGES,
    setup,
    teardown,
    async subject() {
      const latencies: number[] = [];
      for (let done = 0; done < MESSAGES; done += BATCH) {
        const start = performance.now();
        await transport.publish(type, batchOf(type));
        latencies.push(performance.now() - start);
      }
      return latencies;
    },
    async baseline() {
      await raw.publish(type, MESSAGES);
      return undefined;
    },
  };

  const concurrent: BenchCase = {
    name: `publish 100B x${BATCH}, 8 concurrent`,
    transport: 'stomp',
    messages: MESSAGES,
    setup,
    teardown,
    async subject() {
      const publisher = async () => {
        for (let done = 0; done < MESSAGES / 8; done += BATCH) await transport.publish(type, batchOf(type));
      };
      await Promise.all(Array.from({ length: 8 }, publisher));
      return undefined;
    },
    async baseline() {
      await Promise.all(Array.from({ length: 8 }, () => raw.publish(type, MESSAGES / 8)));
      return undefined;
    },
  };

  const consume: BenchCase = {
    name: `consume+ack 100B, prefetch ${PREFETCH}`,
    transport: 'stomp',
    messages: CONSUMED,
    async setup({ rounds }) {
      await setup();
      // Each side reads CONSUMED a round: the warm-up and the timed rounds of both sides, and one spare. The test
      // broker.xml does not page, so Artemis holds them in its heap: many rounds want BUSBAR_ARTEMIS_HEAP raised.
      await raw.publish(type, CONSUMED * (rounds + 2) * 2);
    },
    teardown,
    async subject() {
      const subscription = transport.consume({
        types: [type],
        group,
        consumerId: 'bench',
        offset: 'latest',
        prefetch: PREFETCH,
        ackTimeoutMs: 60_000,
      });
      let count = 0;
      for await (const delivery of subscription) {
        // Acks still unconfirmed when the subscription closes reject; those messages are simply delivered again.
        delivery.ack().catch(() => {});
        if (++count === CONSUMED) break;
      }
      await subscription.close();
      return undefined;
    },
    async baseline() {
      const consumer = new Raw();
      await consumer.start();
      let count = 0;
      const acked: Promise<void>[] = [];
      await new Promise<void>((resolve) => {
        consumer.client.subscribe(
          fqqnOf(type, group),
          (message: IMessage) => {
            // Past the count, leave them unacked: disconnecting returns them, as busbar's close does.
            if (count === CONSUMED) return;
            const { id, done } = consumer.receipt();
            acked.push(done);
            consumer.client.ack(message.headers.ack!, message.headers.subscription!, { receipt: id });
            if (++count === CONSUMED) resolve();
          },
          {
            ack: 'client-individual',
            'subscription-type': 'MULTICAST',
            'consumer-window-size': String(PREFETCH * DEFAULT_WINDOW_BYTES_PER_MESSAGE),
          },
        );
      });
      await Promise.all(acked);
      await consumer.client.deactivate();
      return undefined;
    },
  };

  return [publish, concurrent, consume];
}
