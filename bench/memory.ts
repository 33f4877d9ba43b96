/**
 * Memory dispatch: the bus layer's per-message cost (Message wrapper, middleware chain, ack) on the memory broker.
 * `dispatch 0 middlewares` runs beside the raw MemoryBroker doing the same deliver+ack work without the bus layer;
 * `dispatch 5 middlewares` runs beside `dispatch 0 middlewares`, so its ratio is the cost of the chain.
 */

import { MessageBus, type Middleware, resolveConfig } from '../src/index.ts';
import { buildMessage } from '../src/message/envelope.ts';
import { loadTransport } from '../src/transport/registry.ts';
import { MemoryBroker } from '../src/transports/memory/broker.ts';
import type { BenchCase } from './harness.ts';
import { defineCase, type Tally } from './lib/case.ts';

const N = 20_000;
const BATCH = 100;
const body = 'x'.repeat(100);

async function busDispatch(middlewares: number, tally: Tally): Promise<void> {
  // Fed through the transport itself, as the raw baseline feeds its broker: only dispatch differs between the two.
  const config = resolveConfig('memory:');
  const transport = await (await loadTransport(config.scheme))(config.transport);
  const bus = new MessageBus(transport, config);
  const passThrough: Middleware = (next) => (m) => next(m);
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const handler = bus.handle(
    'bench',
    { group: 'g', concurrency: 64, middlewares: Array.from({ length: middlewares }, () => passThrough) },
    () => {
      tally.count();
      if (tally.handled === N) finish();
    },
  );
  const messages = Array.from({ length: BATCH }, () => buildMessage('bench', 'bench', body));
  for (let i = 0; i < N; i += BATCH) await transport.publish('bench', messages);
  await done;
  await handler.close();
  await bus.close();
}

async function rawDispatch(tally: Tally): Promise<void> {
  const broker = new MemoryBroker();
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const member = {
    prefetch: 128,
    ackTimeoutMs: 30_000,
    outstanding: 0,
    deliver: (d: { ack(): Promise<void> }) => {
      void d.ack().then(() => {
        tally.count();
        if (tally.handled === N) finish();
      });
    },
  };
  broker.join('bench', 'g', 'earliest', member);
  const messages = Array.from({ length: BATCH }, () => buildMessage('bench', 'bench', body));
  for (let i = 0; i < N; i += BATCH) broker.publish('bench', messages);
  await done;
  broker.close();
}

export default async function cases(): Promise<BenchCase[]> {
  return [
    defineCase({
      name: 'dispatch 0 middlewares',
      transport: 'memory',
      messages: N,
      subject: (tally) => busDispatch(0, tally),
      baseline: rawDispatch,
    }),
    defineCase({
      name: 'dispatch 5 middlewares',
      transport: 'memory',
      messages: N,
      subject: (tally) => busDispatch(5, tally),
      baseline: (tally) => busDispatch(0, tally),
    }),
  ];
}
