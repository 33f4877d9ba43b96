import { isUtf8 } from 'node:buffer';
import type { Message } from '../bus/message.ts';
import { BusError, checkTypeName } from '../errors.ts';
import { isJsonType, isTextType } from '../message/codec.ts';
import { wireBody } from '../server/wire.ts';
import { integer, parse } from './args.ts';
import { type CommandContext, connect, requireArg, stopOnSignals } from './common.ts';
import { Printer } from './printer.ts';

/** Without --count, how many unacked messages --no-ack may hold; with it, exactly --count. */
const NO_ACK_HOLD = 1000;
/** Messages fetched ahead of printing when acking: enough to batch acks and claims, bounded by --count. */
const PREFETCH = 1000;

export const RECEIVE_HELP = `Usage: busbar receive <type> --group G [--count N] [--timeout MS] [--offset earliest|latest]
                                  [--no-ack] [--ack-timeout MS] [--json]

Prints each message body on its own line and acks the message once its line is written. Stops after N messages
(--count), after --timeout ms with nothing new, or on Ctrl-C / SIGTERM (it then prints and acks what it holds,
and the messages it had fetched but not printed go back to the group at once). The type must exist (sent to, or
made with busbar types create): receive never creates one, so a misspelt name fails instead of waiting forever.

Bodies are printed as they were sent: JSON and text byte for byte, anything else (application/octet-stream, images)
as base64. A body that does not match its content type (JSON that does not parse, text that is not UTF-8) is
printed as received with a note on stderr, and acked like any other: it never stops the group.

  -g, --group G        the consumer group (each message goes to one receiver of the group)
  -n, --count N        stop after N messages
  -t, --timeout MS     stop after MS milliseconds with nothing new (default: the config's receiveTimeoutMs, else wait)
  --offset O           where a new group starts: earliest (default) or latest
  --ack-timeout MS     a message not acked returns to the group after MS ms (default: the config's, or 30000)
  --no-ack             print without acking: while receive runs, the messages return to the group after the ack
                       timeout (and may be printed again); when it exits they return at once, attempt + 1.
                       It holds at most --count messages at once (${NO_ACK_HOLD} without --count; RabbitMQ: 65535).
  --json               one JSON object per line:
                         id, type, source, time, contentType, key (when set), headers, attempt,
                         body: the JSON body itself (its exact text, line breaks turned into spaces), a string
                               for text, or base64 for anything else
                         encoding: "base64" when body is base64 (as in the REST gateway)
                         decodeError: why, when the body does not match its content type (body is then base64)`;

export async function receive(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('receive', argv, {
    group: { type: 'string', short: 'g' },
    count: { type: 'string', short: 'n' },
    timeout: { type: 'string', short: 't' },
    offset: { type: 'string' },
    'no-ack': { type: 'boolean' },
    'ack-timeout': { type: 'string' },
    json: { type: 'boolean' },
  });
  const type = requireArg(positionals[0], 'message type', 'receive');
  // Names are checked before connecting: a bad one is a usage mistake, whatever the broker holds.
  checkTypeName(type);
  const group = checkTypeName(requireArg(values.group, '--group', 'receive'), 'consumer group');
  const count = integer(values.count, 'count', 1);
  const timeout = integer(values.timeout, 'timeout', 1);
  const ackTimeoutMs = integer(values['ack-timeout'], 'ack-timeout', 1);
  if (values.offset !== undefined && values.offset !== 'earliest' && values.offset !== 'latest') {
    throw new BusError('BUSBAR_ERR_USAGE', `--offset takes earliest or latest, not '${values.offset}'`);
  }
  const noAck = values['no-ack'] === true;
  const format = values.json ? jsonLine : plainLine;
  const bus = await connect(values);
  if (!(await bus.admin().hasMessageType(type))) {
    await bus.close();
    throw new BusError(
      'BUSBAR_ERR_UNKNOWN_TYPE',
      `no message type '${type}' to receive from: check the name (busbar types list), or create it first with ` +
        `busbar types create ${type} (receive never creates a type)`,
    );
  }
  const stop = stopOnSignals();
  // Waiting for messages or a signal must keep the process alive, even where the transport holds no live handle
  // meanwhile (embedded at its prefetch limit): Node would otherwise exit 13 with "unsettled top-level await".
  const alive = setInterval(() => {}, 2 ** 30);
  try {
    const consumer = bus.consumer({
      consumerGroup: group,
      messageTypes: [type],
      offset: values.offset as 'earliest' | 'latest' | undefined,
      ackTimeoutMs,
      // --no-ack settles nothing, so until leases run out the prefetch is what it can print.
      prefetch: noAck ? (count ?? NO_ACK_HOLD) : Math.min(count ?? PREFETCH, PREFETCH),
    });
    const printer = new Printer(ctx.out);
    const done = AbortSignal.any([stop.signal, printer.stopped]);
    try {
      for (let received = 0; count === undefined || received < count; received++) {
        const message = await consumer.receive({ timeout, signal: done });
        if (!message) break;
        const { line, problem } = format(message);
        if (problem) process.stderr.write(`busbar: message ${message.id}: ${problem}; printed as received\n`);
        if (!printer.print(line, noAck ? undefined : message)) await printer.drained();
      }
    } finally {
      await printer.close();
    }
  } finally {
    clearInterval(alive);
    stop.dispose();
    // Closing returns every unacked message (--no-ack's, and fetched ones not printed) to the group at once.
    await bus.close();
  }
}

interface Line {
  line: string | Uint8Array;
  /** Why the body does not match its content type, when it does not. */
  problem?: string | undefined;
}

function mismatch(message: Message): string {
  const what = isJsonType(message.contentType) && message.decodeError ? 'JSON' : 'UTF-8';
  return `the body is not valid ${what} although its content type is '${message.contentType}'`;
}

/** JSON and text bodies as their exact bytes, anything else as base64. */
function plainLine(message: Message): Line {
  const { contentType, raw } = message;
  if (isTextType(contentType)) return { line: raw, problem: isUtf8(raw) ? undefined : mismatch(message) };
  if (!isJsonType(contentType)) return { line: base64(raw) };
  return { line: raw, problem: wireBody(raw, contentType).encoding ? mismatch(message) : undefined };
}

/** The gateway's representation of a body, except that a JSON body is spliced in as its exact text. */
function jsonLine(message: Message): Line {
  const { contentType, raw } = message;
  const { body, encoding } = wireBody(raw, contentType);
  const head = JSON.stringify(message.toJSON()).slice(0, -1);
  if (encoding) {
    const expected = isJsonType(contentType) || isTextType(contentType);
    const tail = expected ? `,"decodeError":${JSON.stringify(mismatch(message))}` : '';
    return { line: `${head},"body":${JSON.stringify(body)},"encoding":"base64"${tail}}` };
  }
  if (!isJsonType(contentType)) return { line: `${head},"body":${JSON.stringify(body)}}` };
  // JSON text never holds a raw line break inside a string, so each one is whitespace between tokens.
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength)
    .toString('utf8')
    .replace(/^\uFEFF/, '')
    .replace(/\r\n|[\r\n]/g, ' ');
  return { line: `${head},"body":${text}}` };
}

function base64(raw: Uint8Array): string {
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
}
