/**
 * What every group of conformance scenarios is given (suite.ts makes it once per run), and the helpers they share.
 * Each scenario decides by events: a message arriving or a loop ending; a fixed wait only bounds how long the
 * suite waits for something that must not happen.
 */
import { randomUUID } from 'node:crypto';
import type { Capabilities, Consumer, Message, MessageBus } from '../../src/index.ts';
import type { Transport } from '../../src/transport/contract.ts';
import type { ConformanceSpec } from './suite.ts';

export { eventually } from '../helpers/eventually.ts';

export interface SuiteContext {
  /** The suite's bus, connected in its before hook (undefined while a skipped suite's scenarios skip). */
  bus(): MessageBus;
  caps(): Capabilities;
  spec: ConformanceSpec;
  /** Another bus on the suite's broker, closed when the suite ends. */
  openBus(): Promise<MessageBus>;
  /** A transport of its own on the suite's broker, closed when the suite ends. */
  openTransport(): Promise<Transport>;
  /** A new type name, recorded so that the suite deletes it (and its dead-letter type) when it ends. */
  newType(prefix?: string): string;
  newGroup(): string;
  ackTimeoutMs: number;
  patience: number;
  /** Declares a scenario; `needs` returns the reason to skip given the capabilities, if any. */
  scenario(title: string, run: () => Promise<void>, needs?: () => string | undefined, timeout?: number): void;
}

const names = () => randomUUID().slice(0, 8);
export const uniqueType = (prefix = 'conf') => `${prefix}-${names()}`;
export const uniqueGroup = () => `g-${names()}`;

/** Receives until `count` distinct message ids arrived or `patienceMs` passed; acks each unless told not to. */
export async function collect(
  consumer: Consumer,
  count: number,
  patienceMs: number,
  options: { ack?: boolean; onMessage?: (m: Message) => void } = {},
): Promise<Map<string, Message>> {
  const seen = new Map<string, Message>();
  const deadline = Date.now() + patienceMs;
  while (seen.size < count && Date.now() < deadline) {
    const message = await consumer.receive({ timeout: Math.max(1, Math.min(1000, deadline - Date.now())) });
    if (!message) continue;
    options.onMessage?.(message);
    seen.set(message.id, message);
    if (options.ack !== false) await message.ack();
  }
  return seen;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries a publish that failed with a retryable BusError (a broker outage), as an application would. */
export async function sendRetrying(send: () => Promise<void>, patienceMs: number): Promise<void> {
  const deadline = Date.now() + patienceMs;
  for (;;) {
    try {
      await send();
      return;
    } catch (error) {
      const retryable = (error as { retryable?: boolean }).retryable === true;
      if (!retryable || Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}
