/**
 * The fault drill every cluster test runs: a producer and a consumer in one group keep going on a clustered broker
 * while the test kills nodes under them. It counts what the broker confirmed and what the consumer received (by
 * message body, a sequence number), measures how long the producer and the consumer took to resume after each
 * kill, and ends when every confirmed message has arrived or the patience runs out.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { MessageBus } from '../../src/index.ts';

const run = promisify(execFile);

/** The command of scripts/brokers/<name> (e.g. `start`, `kill 2`), bounded by `timeoutMs`; resolves with stdout. */
export const clusterScript =
  (name: string, timeoutMs: number) =>
  async (...args: string[]): Promise<string> =>
    (
      await run('bash', [new URL(`../../scripts/brokers/${name}`, import.meta.url).pathname, ...args], {
        timeout: timeoutMs,
      })
    ).stdout;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Each phase of a drill on stderr: a drill that stalls says where. */
export const say = (line: string) => process.stderr.write(`drill ${new Date().toISOString().slice(11, 23)}: ${line}\n`);

export async function until(what: string, done: () => boolean, patienceMs: number): Promise<void> {
  const deadline = Date.now() + patienceMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${patienceMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export interface Drill {
  readonly confirmed: Set<number>;
  readonly received: Map<number, number>;
  /** Runs `fault` (which kills something), then waits until both sides made progress again; returns the pauses. */
  fault(name: string, fault: () => Promise<unknown>, patienceMs?: number): Promise<Resumption>;
  /** Stops sending, waits for every confirmed message, stops the reader; returns the counts. */
  finish(patienceMs?: number): Promise<Counts>;
}

export interface Resumption {
  readonly fault: string;
  /** From the kill to the first send confirmed after it. */
  readonly producerMs: number;
  /** From the kill to the first message received that was sent after it. */
  readonly consumerMs: number;
}

export interface Counts {
  readonly confirmed: number;
  readonly received: number;
  readonly duplicates: number;
  readonly missing: number[];
}

export function drill(producerBus: MessageBus, consumerBus: MessageBus, type: string, group: string): Drill {
  const confirmed = new Set<number>();
  const received = new Map<number, number>();
  const confirmedAt = new Map<number, number>();
  let stopSending = false;
  let stopReading = false;
  let next = 0;
  let lastError: unknown;

  const producer = producerBus.producer({ messageType: type });
  const writer = (async () => {
    while (!stopSending) {
      const i = next++;
      for (;;) {
        try {
          await producer.send([i]);
          break;
        } catch (error) {
          lastError = error;
          if ((error as { retryable?: boolean }).retryable !== true || stopSending) throw error;
          await sleep(100);
        }
      }
      confirmed.add(i);
      confirmedAt.set(i, Date.now());
      await sleep(5);
    }
  })();

  const consumer = consumerBus.consumer({ consumerGroup: group, messageTypes: [type], prefetch: 20 });
  const reader = (async () => {
    while (!stopReading) {
      const m = await consumer.receive({ timeout: 250 }).catch((error) => {
        lastError = error;
        return null;
      });
      if (!m) continue;
      const i = m.body as number;
      received.set(i, (received.get(i) ?? 0) + 1);
      await m.ack().catch((error) => {
        lastError = error;
      });
    }
  })();

  return {
    confirmed,
    received,
    async fault(name, fault, patienceMs = 120_000) {
      await until('50 confirmed sends before the fault', () => confirmed.size >= 50, patienceMs);
      say(`${name}: ${confirmed.size} confirmed, ${received.size} received`);
      const at = Date.now();
      await fault();
      say(`${name}: done; waiting for both sides to resume`);
      // Sends numbered from here on began after the node was dead.
      const firstAfter = next;
      const lastError_ = () => (lastError ? ` (last error: ${(lastError as Error).message})` : '');
      const firstConfirmedAfter = () => [...confirmed].find((i) => i >= firstAfter);
      await until(
        `a send confirmed after ${name}${lastError_()}`,
        () => firstConfirmedAfter() !== undefined,
        patienceMs,
      );
      const producerMs = (confirmedAt.get(firstConfirmedAfter() as number) ?? at) - at;
      let consumerAt = 0;
      await until(
        `a message sent after ${name} to be received${lastError_()}`,
        () => {
          for (const i of received.keys()) if (i >= firstAfter && confirmed.has(i)) consumerAt ||= Date.now();
          return consumerAt > 0;
        },
        patienceMs,
      );
      say(`${name}: producer resumed after ${producerMs} ms, consumer after ${consumerAt - at} ms`);
      return { fault: name, producerMs, consumerMs: consumerAt - at };
    },
    async finish(patienceMs = 120_000) {
      stopSending = true;
      say(`finishing: ${confirmed.size} confirmed, ${received.size} received`);
      await writer;
      say('the writer stopped');
      await until('every confirmed message', () => [...confirmed].every((i) => received.has(i)), patienceMs).catch(
        () => {},
      );
      stopReading = true;
      await reader;
      await consumer.close();
      say(`finished: ${confirmed.size} confirmed, ${received.size} received`);
      const missing = [...confirmed].filter((i) => !received.has(i));
      return {
        confirmed: confirmed.size,
        received: received.size,
        duplicates: [...received.values()].filter((n) => n > 1).length,
        missing,
      };
    },
  };
}
