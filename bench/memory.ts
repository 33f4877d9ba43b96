/**
 * Memory dispatch: the bus layer's per-message cost (Message wrapper, middleware chain, ack) on the memory broker.
 * `dispatch 0 middlewares` runs beside the raw MemoryBroker doing the same deliver+ack work without the bus layer;
 * `dispatch 5 middlewares` runs beside `dispatch 0 middlewares`, so its ratio is the cost of the chain.
 */

import { MessageBus, type Middleware } from '../src/index.ts';
import { buildMessage } from '../src/message/envelope.ts';
import { MemoryBroker } from '../src/transports/memory/broker.ts';
import type { BenchCase } from './harness.ts';

const N = 20_000;
const BATCH = 100;
const body = 'x'.repeat(100);

async function busDispatch(middlewares: number): Promise<number[]> {
  const bus = await MessageBus.connect('memory:');
  const passThrough: Middleware = (next) => (m) => next(m);
  let handled = 0;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const handler = bus.handle(
    'bench',
    { group: 'g', concurrency: 64, middlewares: Array.from({ length: middlewares }, () => passThrough) },
    () => {
      if (++handled === N) finish();
    },
  );
  const messages = Array.from({ length: BATCH }, () => buildMessage('bench', 'bench', body));
  for (let i = 0; i < N; i += BATCH) await bus.transport.publish('bench', messages);
  await done;
  await handler.close();
  await bus.close();
  return [];
}

async function rawDispatch(): Promise<number[]> {
  const broker = new MemoryBroker();
  let handled = 0;
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
        if (++handled === N) finish();
      });
    },
  };
  broker.join('bench', 'g', 'earliest', member);
  const messages = Array.from({ length: BATCH }, () => buildMessage('bench', 'bench', body));
  for (let i = 0; i < N; i += BATCH) broker.publish('bench', messages);
  await done;
  broker.close();
  return [];
}

export default async function cases(): Promise<BenchCase[]> {
  return [
    {
      name: 'dispatch 0 middlewares',
      transport: 'memory',
      messages: N,
      subject: () => busDispatch(0),
      baseline: rawDispatch,
    },
    {
      name: 'dispatch 5 middlewares',
      transport: 'memory',
      messages: N,
      subject: () => busDispatch(5),
      baseline: () => busDispatch(0),
    },
  ];
}
