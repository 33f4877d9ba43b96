/**
 * Tracing end to end with the real OpenTelemetry SDK (in-memory exporter) across real brokers: the producer span's
 * W3C traceparent travels in the message through the broker, and the handler's span is its child; ack and nack spans
 * follow. Also the raw diagnostics_channel events. Decides by events (spans ended), bounded waits only.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import * as api from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { MessageBus, parseTraceparent, traceWithOpenTelemetry } from '../../src/index.ts';
import { BROKERS, brokerSkipReason, hostPort, tcpReachable } from '../helpers/brokers.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await sleep(20);
}

/** The embedded broker's file for this run, removed at exit. */
const dir = mkdtempSync(join(tmpdir(), 'busbar-tracing-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));

const targets: Array<{ name: string; url: string; check?: () => Promise<void> }> = [
  { name: 'embedded', url: `embedded:${join(dir, 'tracing.db')}` },
  {
    name: 'redis',
    url: BROKERS.redis,
    check: async () => {
      const { host, port } = hostPort(BROKERS.redis, 6379);
      await tcpReachable(host, port);
    },
  },
];

for (const target of targets) {
  describe(`tracing across ${target.name}`, { timeout: 60_000 }, () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    let stop = () => {};
    let bus: MessageBus | undefined;
    const type = `trace-${randomUUID().slice(0, 8)}`;

    after(async () => {
      stop();
      if (bus) {
        await bus
          .admin()
          .deregisterMessageType(type)
          .catch(() => {});
        await bus.close();
      }
      await provider.shutdown();
    });

    it('handler span is the child of the producer span; traceparent travels in the message', async (t) => {
      const skip = target.check ? await brokerSkipReason(target.name, target.check) : undefined;
      if (skip) return t.skip(skip);
      const tracer = provider.getTracer('busbar-test');
      stop = traceWithOpenTelemetry(api, { tracer });
      // With a context manager registered, the handler's span is the active one while it runs.
      const contextManager = new AsyncLocalStorageContextManager().enable();
      api.context.setGlobalContextManager(contextManager);
      t.after(() => {
        api.context.disable();
      });
      bus = await MessageBus.connect({ broker: target.url });
      const seen: Array<{ traceparent: string | undefined; attempt: number }> = [];
      const handler = bus.handle(type, { group: 'g', retry: { initialDelayMs: 10, maxDelayMs: 20 } }, async (m) => {
        seen.push({ traceparent: m.headers.traceparent, attempt: m.attempt });
        tracer.startSpan('inside the handler').end();
        if (m.attempt === 1) throw new Error('first attempt fails');
        await bus!.send(`${type}-next`, 'follow-up');
      });
      await handler.ready;
      await bus.send(type, { hello: 'trace' });
      const spans = () => exporter.getFinishedSpans();
      await until(
        () =>
          spans().filter((s) => s.name === `${type} process`).length >= 2 &&
          spans().some((s) => s.name === `${type} ack`),
        30_000,
      );
      await handler.close();

      const publish = spans().find((s) => s.name === `${type} publish`);
      assert.ok(publish, `no publish span among ${spans().map((s) => s.name)}`);
      assert.equal(publish.kind, api.SpanKind.PRODUCER);
      const processes = spans().filter((s) => s.name === `${type} process`);
      assert.equal(processes.length, 2, 'one process span per attempt');
      for (const p of processes) {
        assert.equal(p.kind, api.SpanKind.CONSUMER);
        assert.equal(p.spanContext().traceId, publish.spanContext().traceId, 'same trace as the producer');
        assert.equal(p.parentSpanContext?.spanId, publish.spanContext().spanId, 'parented to the producer span');
      }
      assert.equal(processes.filter((p) => p.status.code === api.SpanStatusCode.ERROR).length, 1, 'the failed run');
      const inner = spans().filter((s) => s.name === 'inside the handler');
      assert.equal(inner.length, 2);
      assert.deepEqual(
        inner.map((s) => s.parentSpanContext?.spanId).sort(),
        processes.map((p) => p.spanContext().spanId).sort(),
        'a span the handler starts is a child of its process span',
      );
      const followUp = spans().find((s) => s.name === `${type}-next publish`);
      const succeeded = processes.find((p) => p.status.code !== api.SpanStatusCode.ERROR);
      assert.equal(followUp?.parentSpanContext?.spanId, succeeded?.spanContext().spanId, 'a publish in a handler');
      const carried = parseTraceparent(seen[0]?.traceparent);
      assert.equal(carried?.spanId, publish.spanContext().spanId, 'the message carries the producer span');
      const nack = spans().find((s) => s.name === `${type} nack`);
      const ack = spans().find((s) => s.name === `${type} ack`);
      assert.ok(nack && ack, 'nack and ack spans');
      assert.equal(ack.spanContext().traceId, publish.spanContext().traceId);
    });

    it('raw channels: publish, deliver (receive) and ack events carry the type and message', async (t) => {
      if (!bus) return t.skip('no bus');
      const events: string[] = [];
      const on = (name: string) => (message: unknown) => {
        const ctx = message as { type?: string };
        if (ctx.type === type) events.push(name);
      };
      const names = ['tracing:busbar:publish:start', 'tracing:busbar:deliver:start', 'tracing:busbar:ack:start'];
      const listeners = names.map((n) => [n, on(n)] as const);
      for (const [n, l] of listeners) subscribe(n, l);
      try {
        const consumer = bus.consumer({ consumerGroup: 'raw', messageTypes: type, offset: 'latest' });
        await consumer.ready;
        await bus.send(type, 'raw');
        const message = await consumer.receive({ timeout: 20_000 });
        assert.ok(message);
        await message.ack();
        await consumer.close();
      } finally {
        for (const [n, l] of listeners) unsubscribe(n, l);
      }
      assert.deepEqual(events, names);
    });
  });
}

describe('BusMetrics: Prometheus text for a library user, without the gateway', { timeout: 60_000 }, () => {
  it('counts publishes, deliveries, acks, nacks and handler failures, and adds the broker stats', async () => {
    const { BusMetrics } = await import('../../src/index.ts');
    const bus = await MessageBus.connect({ broker: `embedded:${join(dir, 'metrics.db')}` });
    const metrics = new BusMetrics({ bus });
    const type = `metrics-${randomUUID().slice(0, 8)}`;
    try {
      let runs = 0;
      let settled: () => void = () => {};
      const done = new Promise<void>((resolve) => {
        settled = resolve;
      });
      const handler = bus.handle(type, { group: 'mg', retry: { initialDelayMs: 5, maxDelayMs: 10 } }, async () => {
        runs++;
        if (runs === 1) throw new Error('once');
        setImmediate(settled);
      });
      await handler.ready;
      await bus.sendBatch(type, ['a']);
      await done;
      await handler.close();
      const text = await metrics.render();
      assert.match(text, new RegExp(`busbar_published_total\\{type="${type}"\\} 1`));
      assert.match(text, new RegExp(`busbar_delivered_total\\{type="${type}",group="mg"\\} 2`));
      assert.match(text, new RegExp(`busbar_nacked_total\\{type="${type}",group="mg"\\} 1`));
      assert.match(text, new RegExp(`busbar_acked_total\\{type="${type}",group="mg"\\} 1`));
      assert.match(text, new RegExp(`busbar_handler_failed_total\\{type="${type}",group="mg"\\} 1`));
      assert.match(text, new RegExp(`busbar_handler_seconds_count\\{type="${type}",group="mg"\\} 2`));
      assert.match(text, /busbar_broker_up 1/);
      assert.match(text, new RegExp(`busbar_type_depth\\{type="${type}"\\} 1`));
    } finally {
      metrics.close();
      await bus.close();
    }
  });
});
