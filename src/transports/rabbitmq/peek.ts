/**
 * admin.peek over the type's replay log, the stream queue `busbar:<type>`: a consumer on its own channel attaches at
 * `x-stream-offset` (an offset, or `first`) and acks what it reads, which a stream ignores (reading a
 * stream is non-destructive; no group queue is touched). Where the log ends is marked by a marker message appended
 * once the consumer is attached (the same kind #seed appends, skipped by every reader), so a peek of fewer
 * messages than asked ends as soon as the marker arrives, without a timer deciding it. A position past the end is
 * told by a second consumer on the log's last chunk, which sees the marker's offset.
 */
import { randomUUID } from 'node:crypto';
import type { Message } from 'amqplib';
import { BusError, checkTypeName } from '../../errors.ts';
import type { PeekedMessage, PeekOptions } from '../../transport/contract.ts';
import type { Broker } from './broker.ts';
import { fromAmqp, logQueue, SEED_MARKER_HEADER } from './wire.ts';

/** Unacked stream deliveries the broker sends ahead. */
const PEEK_PREFETCH = 200;
const noop = () => {};

function parseOffset(position: string): number {
  if (!/^\d{1,15}$/.test(position)) {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `'${position}' is not a RabbitMQ position: give a stream offset (a whole number) a previous peek returned`,
    );
  }
  return Number(position);
}

export async function peekLog(broker: Broker, type: string, options: PeekOptions): Promise<PeekedMessage[]> {
  checkTypeName(type);
  const from = options.from === undefined ? undefined : parseOffset(options.from);
  if (!(await broker.queueExists(logQueue(type)))) return [];
  // A stream attaches at an offset or at the start. Not at a timestamp: the broker matches it against chunk times
  // from its own clock, in whole seconds, and (RabbitMQ 3.10 here) attaches past chunks of the last seconds, so a
  // time is found by reading from the start and skipping messages whose `time` is earlier.
  const attach = from ?? 'first';
  const model = await broker.connection.model(Date.now() + broker.options.publishTimeoutMs);
  const reader = await model.createChannel();
  reader.on('error', noop);
  const writer = await model.createConfirmChannel().catch(async (error: unknown) => {
    await reader.close().catch(noop);
    throw error;
  });
  writer.on('error', noop);
  const out: PeekedMessage[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    await reader.prefetch(Math.min(PEEK_PREFETCH, options.count + 1));
    const marker = randomUUID();
    await new Promise<void>((resolve, reject) => {
      // Bounds a peek whose marker never comes back (the log deleted meanwhile, a stuck broker).
      timer = setTimeout(
        () =>
          reject(
            new BusError('BUSBAR_ERR_TIMEOUT', `peeking at ${type} took longer than publishTimeoutMs; retry`, {
              retryable: true,
            }),
          ),
        broker.options.publishTimeoutMs * 2,
      );
      reader.once('close', () =>
        reject(new BusError('BUSBAR_ERR_CONNECTION', `the connection closed while peeking at ${type}; retry`)),
      );
      const onMessage = (message: Message | null) => {
        if (!message) {
          reject(new BusError('BUSBAR_ERR_BROKER', `the replay log of ${type} went away while peeking; retry`));
          return;
        }
        reader.ack(message);
        const headers = message.properties.headers ?? {};
        const seen = headers[SEED_MARKER_HEADER];
        if (seen === marker) resolve();
        if (seen !== undefined || out.length >= options.count) return;
        const offset = Number(headers['x-stream-offset']);
        if (from !== undefined && offset < from) return;
        const decoded = fromAmqp(message, type);
        if (options.fromTime !== undefined && Date.parse(decoded.time) < options.fromTime) return;
        out.push({ position: String(offset), message: decoded });
        if (out.length >= options.count) resolve();
      };
      reader
        .consume(logQueue(type), onMessage, { arguments: { 'x-stream-offset': attach } })
        .then(
          () =>
            new Promise<void>((done, fail) =>
              writer.sendToQueue(
                logQueue(type),
                Buffer.alloc(0),
                { persistent: true, headers: { [SEED_MARKER_HEADER]: marker } },
                (error) => (error ? fail(error) : done()),
              ),
            ),
        )
        .then(() => {
          // A stream consumer attached past the log's end waits there for messages that may never come: a second
          // consumer on the last chunk finds the marker's offset, and a start past it shows nothing.
          if (from === undefined) return;
          return reader.consume(
            logQueue(type),
            (message) => {
              if (!message) return;
              reader.ack(message);
              const headers = message.properties.headers ?? {};
              if (headers[SEED_MARKER_HEADER] === marker && from > Number(headers['x-stream-offset'])) resolve();
            },
            { arguments: { 'x-stream-offset': 'last' } },
          );
        })
        .catch(reject);
    });
    return out;
  } finally {
    clearTimeout(timer);
    await Promise.all([reader.close().catch(noop), writer.close().catch(noop)]);
  }
}
