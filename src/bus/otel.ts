/**
 * OpenTelemetry on busbar's tracing channels (src/bus/tracing.ts), without busbar depending on OpenTelemetry:
 *
 *   import * as api from '@opentelemetry/api';
 *   import { traceWithOpenTelemetry } from 'busbar';
 *   const stop = traceWithOpenTelemetry(api); // or (api, { tracer: provider.getTracer('my-app') })
 *
 * Each publish is a PRODUCER span (`<type> publish`) whose W3C traceparent travels in every message's headers; each
 * handler run (or receive) is a CONSUMER span (`<type> process`) whose parent is that producer span, across any
 * broker, and the active span while the handler runs; ack and nack are spans under the consumer's. `stop()`
 * unsubscribes.
 */
import type { TracingChannelSubscribers } from 'node:diagnostics_channel';
import {
  ackChannel,
  deliverChannel,
  type MessageContext,
  nackChannel,
  type PublishContext,
  publishChannel,
} from './tracing.ts';

/** The parts of @opentelemetry/api used here (structural, so busbar needs no OpenTelemetry package). */
export interface OtelSpanContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  isRemote?: boolean;
  traceState?: { serialize(): string } | undefined;
}
export interface OtelSpan {
  spanContext(): OtelSpanContext;
  setStatus(status: { code: number; message?: string }): unknown;
  recordException(exception: unknown): void;
  end(): void;
}
export interface OtelTracer {
  startSpan(name: string, options?: Record<string, unknown>, context?: unknown): OtelSpan;
}
export interface OtelApi {
  trace: {
    getTracer(name: string, version?: string): OtelTracer;
    setSpanContext(context: unknown, spanContext: OtelSpanContext): unknown;
    setSpan(context: unknown, span: OtelSpan): unknown;
  };
  context: { active(): unknown; with<T>(context: unknown, fn: () => T): T };
  SpanKind: { PRODUCER: number; CONSUMER: number; INTERNAL: number };
  SpanStatusCode: { ERROR: number };
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The span context a W3C traceparent header names, or undefined for none or a malformed one. */
export function parseTraceparent(value: string | undefined): OtelSpanContext | undefined {
  const match = value === undefined ? null : TRACEPARENT.exec(value.trim().toLowerCase());
  if (!match || match[1] === 'ff' || /^0+$/.test(match[2]!) || /^0+$/.test(match[3]!)) return undefined;
  return { traceId: match[2]!, spanId: match[3]!, traceFlags: Number.parseInt(match[4]!, 16), isRemote: true };
}

export function formatTraceparent(context: OtelSpanContext): string {
  return `00-${context.traceId}-${context.spanId}-${(context.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

export function traceWithOpenTelemetry(api: OtelApi, options: { tracer?: OtelTracer } = {}): () => void {
  const tracer = options.tracer ?? api.trace.getTracer('busbar');
  const spans = new WeakMap<object, OtelSpan>();
  const processing = new WeakMap<object, OtelSpan>();

  function finish(context: object, error?: unknown): void {
    const span = spans.get(context);
    if (!span) return;
    spans.delete(context);
    if (error !== undefined) {
      span.recordException(error);
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: String((error as Error)?.message ?? error) });
    }
    span.end();
  }

  /** The context a received message's span starts in: its producer's span (from traceparent), where it has one. */
  function parentOf(m: MessageContext): unknown {
    const processSpan = processing.get(m.message);
    if (processSpan) return api.trace.setSpanContext(api.context.active(), processSpan.spanContext());
    const remote = parseTraceparent(m.message.headers.traceparent);
    return remote ? api.trace.setSpanContext(api.context.active(), remote) : api.context.active();
  }

  const attributes = (type: string, m?: MessageContext) => ({
    'messaging.system': 'busbar',
    'messaging.destination.name': type,
    ...(m ? { 'messaging.message.id': m.message.id, 'messaging.consumer.group.name': m.group ?? '' } : {}),
  });

  const publish: TracingChannelSubscribers<PublishContext> = {
    start(ctx) {
      const span = tracer.startSpan(
        `${ctx.type} publish`,
        {
          kind: api.SpanKind.PRODUCER,
          attributes: { ...attributes(ctx.type), 'messaging.batch.message_count': ctx.messages.length },
        },
        api.context.active(),
      );
      spans.set(ctx, span);
      const sc = span.spanContext();
      // A second tracer subscribed to the same channel does not overwrite the first one's trace.
      if (ctx.headers.traceparent !== undefined) return;
      ctx.headers.traceparent = formatTraceparent(sc);
      const state = sc.traceState?.serialize();
      if (state) ctx.headers.tracestate = state;
    },
    end() {},
    asyncStart() {},
    asyncEnd: (ctx) => finish(ctx),
    error: (ctx) => finish(ctx, (ctx as { error?: unknown }).error),
  };

  const deliver: TracingChannelSubscribers<MessageContext> = {
    start(ctx) {
      const parent = parentOf(ctx);
      const span = tracer.startSpan(
        `${ctx.type} process`,
        { kind: api.SpanKind.CONSUMER, attributes: attributes(ctx.type, ctx) },
        parent,
      );
      spans.set(ctx, span);
      processing.set(ctx.message, span);
      // The handler runs with its span active: spans it starts (with a context manager registered) are children.
      if (!ctx.sync && !ctx.wrap) {
        const active = api.trace.setSpan(parent, span);
        ctx.wrap = (run) => api.context.with(active, run);
      }
    },
    // receive() traces the hand-out synchronously: its span ends at `end`; a handler's run ends at asyncEnd.
    end(ctx) {
      if (ctx.sync) finish(ctx);
    },
    asyncStart() {},
    asyncEnd: (ctx) => finish(ctx),
    error: (ctx) => finish(ctx, (ctx as { error?: unknown }).error),
  };

  const settle = (name: 'ack' | 'nack'): TracingChannelSubscribers<MessageContext> => ({
    start(ctx) {
      spans.set(
        ctx,
        tracer.startSpan(
          `${ctx.type} ${name}`,
          { kind: api.SpanKind.INTERNAL, attributes: attributes(ctx.type, ctx) },
          parentOf(ctx),
        ),
      );
    },
    end() {},
    asyncStart() {},
    asyncEnd: (ctx) => finish(ctx),
    error: (ctx) => finish(ctx, (ctx as { error?: unknown }).error),
  });

  const ack = settle('ack');
  const nack = settle('nack');
  publishChannel.subscribe(publish);
  deliverChannel.subscribe(deliver);
  ackChannel.subscribe(ack);
  nackChannel.subscribe(nack);
  return () => {
    publishChannel.unsubscribe(publish);
    deliverChannel.unsubscribe(deliver);
    ackChannel.unsubscribe(ack);
    nackChannel.unsubscribe(nack);
  };
}
