import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { buffer } from 'node:stream/consumers';
import type { Producer } from '../bus/producer.ts';
import { message as outgoing } from '../bus/producer.ts';
import { BusError } from '../errors.ts';
import { normaliseTime } from '../message/cloudevents.ts';
import { BYTES_TYPE, isJsonType } from '../message/codec.ts';
import { headers, parse } from './args.ts';
import { type CommandContext, connect, requireArg } from './common.ts';
import { Progress } from './progress.ts';

export const SEND_HELP = `Usage: busbar send <type> [body...] [options]
       busbar send <type> --file PATH|- [options]

Sends each body argument as a message, or one message per line of stdin when there are none, or the whole of a file
(or of stdin, with --file -) as one message, byte for byte. Exits 0 once the broker has durably accepted every
message.

  --file PATH          send the file's bytes as one message; - reads stdin to its end
  --content-type T     the body's content type: text/plain; charset=utf-8 for bodies and lines,
                       application/octet-stream for --file. With a JSON type (application/json, *+json) every
                       body must be valid JSON: the first one that is not stops the command with exit 2, and
                       only the lines before it are sent
  --key K              the partition key (ordering and partitioning)
  --header k=v         a user header; repeat for more
  --id ID              the message id (CloudEvents id; default a new UUIDv7), for exactly one message
  --source S           the producer, sent as CloudEvents source (default busbar://<host>/<pid>)
  --time T             the CloudEvents time of every message sent, RFC 3339 (default: now); an offset such as
                       +01:00 is written in UTC`;

const SEND_BATCH = 500;
/** The longest id or source every broker carries (AMQP 0-9-1 keeps them in 255-byte short strings). */
const MAX_ATTRIBUTE_BYTES = 255;

export async function send(argv: string[], ctx: CommandContext): Promise<void> {
  const { values, positionals } = parse('send', argv, {
    key: { type: 'string' },
    header: { type: 'string', multiple: true },
    'content-type': { type: 'string' },
    file: { type: 'string' },
    id: { type: 'string' },
    source: { type: 'string' },
    time: { type: 'string' },
  });
  const type = requireArg(positionals[0], 'message type', 'send');
  const bodies = positionals.slice(1);
  const file = values.file;
  if (file !== undefined && bodies.length > 0) {
    throw new BusError('BUSBAR_ERR_USAGE', '--file sends one message: give either body arguments or --file, not both');
  }
  const id = attribute(values.id, 'id');
  if (id !== undefined && file === undefined && bodies.length !== 1) {
    throw new BusError('BUSBAR_ERR_USAGE', '--id names one message: give exactly one body argument, or --file');
  }
  const contentType = values['content-type'] ?? (file === undefined ? undefined : BYTES_TYPE);
  const json = contentType !== undefined && isJsonType(contentType);
  const time = values.time === undefined ? undefined : normaliseTime(values.time);
  if (values.time !== undefined && time === undefined) {
    throw new BusError(
      'BUSBAR_ERR_USAGE',
      `--time takes an RFC 3339 timestamp such as 2026-01-02T03:04:05Z, not '${values.time}'`,
    );
  }
  const options = { key: values.key, headers: headers(values.header), contentType, id, time };
  const producerId = attribute(values.source, 'source');
  // A file or argument body is read and checked before connecting, so a bad one sends nothing (lines: see sendLines).
  const fileBody = file === undefined ? undefined : await readBody(file, ctx);
  if (fileBody) checkJson(json, fileBody, 'the file');
  for (const [i, body] of bodies.entries()) checkJson(json, body, `body ${i + 1}`);
  const bus = await connect(values);
  try {
    const producer = bus.producer({ messageType: type, producerId, defaults: options });
    if (fileBody) await producer.send([outgoing(fileBody)]);
    else if (bodies.length > 0) await producer.send(bodies);
    else await sendLines(producer, type, json, ctx);
  } finally {
    await bus.close();
  }
}

async function sendLines(producer: Producer, type: string, json: boolean, ctx: CommandContext): Promise<void> {
  if (ctx.stdin.isTTY) {
    process.stderr.write(`busbar: reading messages for '${type}' from stdin, one per line; end with Ctrl-D\n`);
  }
  const progress = new Progress(`sending to ${type}`);
  let batch: string[] = [];
  let sent = 0;
  for await (const line of createInterface({ input: ctx.stdin, crlfDelay: Number.POSITIVE_INFINITY })) {
    try {
      checkJson(json, line, `line ${sent + batch.length + 1}`);
    } catch (error) {
      await producer.send(batch);
      throw new BusError('BUSBAR_ERR_USAGE', `${(error as Error).message}; the lines before it were sent`);
    }
    batch.push(line);
    if (batch.length >= SEND_BATCH) {
      await producer.send(batch);
      sent += batch.length;
      batch = [];
      progress.update(sent);
    }
  }
  if (batch.length) await producer.send(batch);
  sent += batch.length;
  if (sent >= SEND_BATCH) progress.done(`sent ${sent} messages to ${type}`);
}

async function readBody(path: string, ctx: CommandContext): Promise<Uint8Array> {
  if (path === '-') return new Uint8Array(await buffer(ctx.stdin));
  try {
    return new Uint8Array(await readFile(path));
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new BusError('BUSBAR_ERR_USAGE', `cannot read --file ${path}: ${reason}`, { cause: error });
  }
}

/** A JSON content type promises JSON: refusing a body that is not keeps it from failing every receiver instead. */
function checkJson(json: boolean, body: string | Uint8Array, what: string): void {
  if (!json) return;
  try {
    JSON.parse(typeof body === 'string' ? body : new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_USAGE',
      `${what} is not valid JSON (${(error as Error).message.replace(/\s+/g, ' ')}) but --content-type says JSON: fix it, or send it ` +
        'as text (--content-type text/plain) or bytes (--content-type application/octet-stream)',
      { cause: error },
    );
  }
}

function attribute(value: string | undefined, name: string): string | undefined {
  if (value === undefined) return undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused here
  if (value === '' || /[\u0000-\u001f\u007f]/.test(value) || Buffer.byteLength(value) > MAX_ATTRIBUTE_BYTES) {
    throw new BusError(
      'BUSBAR_ERR_USAGE',
      `--${name} must be 1 to ${MAX_ATTRIBUTE_BYTES} bytes without control characters, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}
