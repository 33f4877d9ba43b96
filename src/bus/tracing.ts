/**
 * Tracing channels (node:diagnostics_channel) for what the bus does, for any tracer to subscribe to:
 * - `busbar:publish`  around each broker publish: { type, messages, headers }. A subscriber's `start` may put
 *   W3C trace headers (traceparent, tracestate) into `headers`: every message of the batch that carries none gets
 *   them, so the trace travels with the message through the broker.
 * - `busbar:deliver`  around a handler's run of one message (bus.handle), or the hand-out of one by receive():
 *   { type, group, message } (message.headers.traceparent is the producer's span, where there was one).
 * - `busbar:ack`, `busbar:nack`  around settling a message: { type, group, message }.
 * Each is a TracingChannel: start, end, asyncStart, asyncEnd and error, as node:diagnostics_channel defines them.
 * Nothing is done (not even a context object made) while a channel has no subscriber.
 * src/bus/otel.ts hooks OpenTelemetry onto them; docs/api.md ("Tracing and metrics") shows how.
 */
import { tracingChannel } from 'node:diagnostics_channel';
import type { Transport, TransportMessage } from '../transport/contract.ts';
import type { Message } from './message.ts';

export interface PublishContext {
  readonly type: string;
  readonly messages: readonly TransportMessage[];
  /** Headers a subscriber wants on every message of the batch that does not set them itself (traceparent...). */
  readonly headers: Record<string, string>;
}

export interface MessageContext {
  readonly type: string;
  /** The consumer group; undefined where the message was not read through one. */
  readonly group: string | undefined;
  readonly message: Message;
  /** True for receive()'s hand-out, traced with traceSync (it ends at `end`); absent around a handler's run. */
  readonly sync?: boolean;
  /**
   * A subscriber's `start` may set this: the handler then runs inside it (`wrap(run)`), e.g. with the consumer span as
   * the active context, so spans the handler makes are its children.
   */
  wrap?: <T>(run: () => T) => T;
}

export const publishChannel = tracingChannel<unknown, PublishContext>('busbar:publish');
export const deliverChannel = tracingChannel<unknown, MessageContext>('busbar:deliver');
export const ackChannel = tracingChannel<unknown, MessageContext>('busbar:ack');
export const nackChannel = tracingChannel<unknown, MessageContext>('busbar:nack');

/** The batch with the subscriber's headers added where a message has none of its own. */
function withHeaders(batch: readonly TransportMessage[], headers: Record<string, string>): TransportMessage[] {
  return batch.map((m) => {
    let merged: Record<string, string> | undefined;
    for (const [name, value] of Object.entries(headers)) {
      if (m.headers[name] !== undefined) continue;
      merged ??= { ...m.headers };
      merged[name] = value;
    }
    return merged ? { ...m, headers: merged } : m;
  });
}

/** A view of `transport` whose publish runs inside the `busbar:publish` channel. */
export function withTracing(transport: Transport): Transport {
  return {
    get name() {
      return transport.name;
    },
    get capabilities() {
      return transport.capabilities;
    },
    get admin() {
      return transport.admin;
    },
    publish(type, batch) {
      if (!publishChannel.hasSubscribers) return transport.publish(type, batch);
      const context: PublishContext = { type, messages: batch, headers: {} };
      return publishChannel.tracePromise(
        () =>
          transport.publish(type, Object.keys(context.headers).length ? withHeaders(batch, context.headers) : batch),
        context,
      );
    },
    consume: (options) => transport.consume(options),
    close: () => transport.close(),
  };
}

/** Runs `run` inside the `busbar:deliver` channel where it has a subscriber. */
export function traceDeliver<T>(message: Message, group: string | undefined, run: () => Promise<T>): Promise<T> {
  if (!deliverChannel.hasSubscribers) return run();
  const context: MessageContext = { type: message.type, group, message };
  return deliverChannel.tracePromise(() => (context.wrap ? context.wrap(run) : run()), context);
}

/** Runs a settle call inside the ack or nack channel where it has a subscriber. */
export function traceSettle(
  kind: 'ack' | 'nack',
  message: Message,
  group: string | undefined,
  run: () => Promise<void>,
): Promise<void> {
  const channel = kind === 'ack' ? ackChannel : nackChannel;
  if (!channel.hasSubscribers) return run();
  return channel.tracePromise(run, { type: message.type, group, message });
}
