/**
 * amqp10 transport vs raw rhea doing the same work on the same Artemis (BUSBAR_TEST_AMQP10_URL, default
 * amqp10://busbar:busbar@127.0.0.1:5682), same address and group queue, same message format (docs/wire/amqp10.md:
 * durable, CloudEvents application properties, one Data section), same settlement (each message `accepted`):
 * - `publish 100B x100`: one awaited publish() of 100 at a time, vs 100 sends on one rhea sender, awaiting all 100
 *   `accepted` dispositions.
 * - `publish 100B x100, 8 concurrent`: 8 publishers at once on one transport, vs 8 such loops on one sender.
 * - `consume+ack 100B`: one consumer, prefetch 100, acking every message, vs a raw receiver on the group's FQQN with
 *   100 credits, giving one credit back for each. Both settle alike (docs/wire/amqp10.md, "Acknowledgement"): each
 *   message `accepted` inside a transaction, the transaction of one event-loop turn discharged on the next, the next
 *   one declared at once; both count a round done once the broker committed every ack (busbar's close waits for it).
 */
import { randomUUID } from 'node:crypto';
import rhea, { type Connection, type Delivery, type EventContext, type Sender } from 'rhea';
import type { Transport, TransportMessage } from '../src/transport/contract.ts';
import createAmqp10Transport from '../src/transports/amqp10/index.ts';
import {
  acceptedIn,
  coordinatorTarget,
  DECLARE,
  declaredId,
  discharge,
} from '../src/transports/amqp10/transactions.ts';
import { fqqn, toAmqp } from '../src/transports/amqp10/wire.ts';
import type { BenchCase } from './harness.ts';

const URL = process.env.BUSBAR_TEST_AMQP10_URL ?? 'amqp10://busbar:busbar@127.0.0.1:5682';
const MESSAGES = 5_000;
const BATCH = 100;
const PREFETCH = 100;
const BODY = new Uint8Array(100).fill(0x61);
const CONSUMED = 2_000;

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

/** Sends one batch on a raw sender and resolves once the broker accepted every message of it. */
function rawBatch(sender: Sender, type: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = BATCH;
    const deliveries = new Set(batchOf(type).map((m) => sender.send(toAmqp(m))));
    const onAccepted = (context: EventContext) => {
      if (!deliveries.delete(context.delivery!)) return;
      if (--left === 0) {
        sender.off('accepted', onAccepted);
        sender.off('rejected', onRejected);
        resolve();
      }
    };
    const onRejected = (context: EventContext) => {
      if (deliveries.has(context.delivery!)) reject(new Error('rejected'));
    };
    sender.on('accepted', onAccepted);
    sender.on('rejected', onRejected);
  });
}

async function rawPublish(sender: Sender, type: string, count: number): Promise<void> {
  for (let done = 0; done < count; done += BATCH) await rawBatch(sender, type);
}

export default async function cases(): Promise<BenchCase[]> {
  let transport: Transport;
  let raw: Connection;
  let sender: Sender;
  const type = `bench-${randomUUID().slice(0, 8)}`;
  const group = `g-${randomUUID().slice(0, 8)}`;
  const parsed = new globalThis.URL(URL.replace(/^amqp10:/, 'http:'));

  const setup = async () => {
    transport = await createAmqp10Transport({
      url: URL,
      endpoints: [parsed.host],
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
    raw = rhea.create_container().connect({
      host: parsed.hostname,
      port: Number(parsed.port),
      username: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      reconnect: false,
    });
    sender = raw.open_sender({ target: { address: type } });
    await new Promise((resolve) => sender.once('sender_open', resolve));
  };
  const teardown = async () => {
    raw.close();
    await transport.admin.deleteType(type);
    await transport.close();
  };

  const publish: BenchCase = {
    name: `publish 100B x${BATCH}`,
    transport: 'amqp10',
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
      await rawPublish(sender, type, MESSAGES);
      return undefined;
    },
  };

  const concurrent: BenchCase = {
    name: `publish 100B x${BATCH}, 8 concurrent`,
    transport: 'amqp10',
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
      await Promise.all(Array.from({ length: 8 }, () => rawPublish(sender, type, MESSAGES / 8)));
      return undefined;
    },
  };

  const consume: BenchCase = {
    name: `consume+ack 100B, prefetch ${PREFETCH}`,
    transport: 'amqp10',
    messages: CONSUMED,
    async setup({ rounds }) {
      await setup();
      // Each side reads CONSUMED a round: the warm-up and the timed rounds of both sides, and one spare.
      await rawPublish(sender, type, CONSUMED * (rounds + 2) * 2);
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
        void delivery.ack();
        if (++count === CONSUMED) break;
      }
      await subscription.close();
      return undefined;
    },
    async baseline() {
      const session = raw.create_session();
      session.begin();
      const coordinator = (session as unknown as { create_sender(name: string, o: object): Sender }).create_sender(
        `bench-txn-${randomUUID()}`,
        {},
      );
      (coordinator as unknown as { local: { attach: { target: unknown } } }).local.attach.target = coordinatorTarget();
      (coordinator as unknown as { attach(): void }).attach();
      // The open transaction's state, the accepts waiting for one, and the discharges not answered yet.
      let state: unknown;
      let waiting: Delivery[] = [];
      let scheduled = false;
      let discharging = 0;
      let count = 0;
      let done: () => void = () => {};
      const accept = (delivery: Delivery) =>
        (delivery as unknown as { update(settled: boolean, s: unknown): void }).update(true, state);
      const declare = () => {
        state = undefined;
        coordinator.send(DECLARE, undefined, 0);
      };
      coordinator.on('settled', (context: EventContext) => {
        const id = declaredId(context.delivery!.remote_state);
        if (id) {
          state = acceptedIn(id);
          for (const delivery of waiting) accept(delivery);
          if (waiting.length > 0) schedule();
          waiting = [];
          return;
        }
        if (--discharging === 0 && count === CONSUMED && !scheduled) done();
      });
      let used = false;
      const schedule = () => {
        used = true;
        if (scheduled) return;
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          if (!state || !used) return;
          const id = (state as { value: Array<{ value: Buffer }> }).value[0]!.value;
          used = false;
          declare();
          discharging++;
          coordinator.send(discharge(id), undefined, 0);
        });
      };
      declare();
      const receiver = session.open_receiver({
        source: { address: fqqn(type, group) },
        credit_window: 0,
        autoaccept: false,
      });
      await new Promise<void>((resolve) => {
        done = resolve;
        receiver.once('receiver_open', () => receiver.add_credit(PREFETCH));
        receiver.on('message', (context: EventContext) => {
          // Past the count, return them, as busbar's close does.
          if (count === CONSUMED) {
            context.delivery!.modified({ delivery_failed: true });
            return;
          }
          if (state) {
            accept(context.delivery!);
            schedule();
          } else waiting.push(context.delivery!);
          receiver.add_credit(1);
          count++;
        });
      });
      await new Promise((resolve) => {
        receiver.once('receiver_close', resolve);
        receiver.close();
      });
      session.close();
      return undefined;
    },
  };

  return [publish, concurrent, consume];
}
