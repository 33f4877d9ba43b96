/**
 * The PUB socket. Bound endpoints are shared by every transport of the process that names them (one process binds
 * a port once, as fedmsg does); a relay connection belongs to its transport.
 *
 * Slow subscribers: the socket runs with ZMQ_XPUB_NODROP and a send high-water mark, so a subscriber that cannot keep
 * up makes a send fail with EAGAIN instead of losing the message silently (plain PUB behaviour). A send then waits
 * for room, retrying with a short backoff, for at most `sendWaitMs`; after that publish() fails with a retryable
 * BUSBAR_ERR_TIMEOUT. So the publisher neither blocks forever nor queues without bound.
 */
import * as zmq from 'zeromq';
import { BusError } from '../../errors.ts';
import type { ZeromqOptions } from './options.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class PublisherSocket {
  readonly #socket: zmq.Publisher;
  readonly #sendWaitMs: number;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(socket: zmq.Publisher, sendWaitMs: number) {
    this.#socket = socket;
    this.#sendWaitMs = sendWaitMs;
  }

  /**
   * Sends the frames of each message in order. zeromq allows one send at a time per socket, so sends are chained;
   * the promise settles once every message was handed to the socket (ZeroMQ confirms nothing more).
   */
  send(messages: readonly (readonly [string, string])[]): Promise<void> {
    const run = this.#tail.then(() => this.#sendAll(messages));
    this.#tail = run.catch(() => {});
    return run;
  }

  async #sendAll(messages: readonly (readonly [string, string])[]): Promise<void> {
    for (const frames of messages) {
      if (this.#closed) throw new BusError('BUSBAR_ERR_CLOSED', 'the zeromq transport is closed');
      // The send itself first (the common case: the queue has room), the waiting loop only after a full queue.
      try {
        await this.#socket.send(frames as [string, string]);
      } catch (error) {
        if ((error as { code?: string }).code !== 'EAGAIN') throw error;
        await this.#sendWaiting(frames);
      }
    }
  }

  /** Sends one message whose first try found the queue full: tries again with a backoff, for `sendWaitMs` at most. */
  async #sendWaiting(frames: readonly [string, string]): Promise<void> {
    const deadline = Date.now() + this.#sendWaitMs;
    for (let pause = 0; ; pause = Math.min(pause * 2 || 1, 50)) {
      if (this.#closed) throw new BusError('BUSBAR_ERR_CLOSED', 'the zeromq transport is closed');
      if (Date.now() >= deadline) {
        throw new BusError(
          'BUSBAR_ERR_TIMEOUT',
          `a zeromq subscriber has not read for ${this.#sendWaitMs} ms and its queue is at the high-water mark: ` +
            'the message was not sent; retry later, raise highWaterMark or sendWaitMs, or find the slow subscriber',
        );
      }
      // The first retry only lets the event loop run (a subscriber in this process may be the one to read).
      await (pause === 0 ? new Promise((resolve) => setImmediate(resolve)) : sleep(pause));
      try {
        await this.#socket.send(frames as [string, string]);
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== 'EAGAIN') throw error;
      }
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#tail;
    this.#socket.close();
  }
}

function newSocket(options: ZeromqOptions): zmq.Publisher {
  return new zmq.Publisher({
    noDrop: true,
    sendHighWaterMark: options.highWaterMark,
    // A full queue fails the send at once with EAGAIN all the same (a PUB socket always reports room:
    // ZMQ_XPUB_NODROP only refuses the send itself), and PublisherSocket waits for room itself, for sendWaitMs at
    // most. Not 0: with a send timeout of 0, zeromq.js resolves every send synchronously and never lets the event
    // loop run while a long run of messages goes out (its own reader, timers, I/O); with any other value it defers
    // one send in 512 to the next loop turn, so publishing and receiving interleave (issue 11, BENCHMARKS.md).
    sendTimeout: Math.max(1, options.sendWaitMs),
    linger: options.lingerMs,
  });
}

/**
 * Binds, retrying while the address is in use for up to `patienceMs`: a socket this process closed a moment ago
 * holds its port until ZeroMQ's I/O thread has finished with it (up to its linger time).
 */
async function bindRetrying(socket: zmq.Publisher, endpoint: string, patienceMs: number): Promise<void> {
  const deadline = Date.now() + patienceMs;
  for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
    try {
      await socket.bind(endpoint);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'EADDRINUSE' || Date.now() >= deadline) throw error;
      await sleep(pause);
    }
  }
}

const bound = new Map<string, { socket: Promise<PublisherSocket>; users: number }>();

/** A handle on a publisher: `release()` closes it once no transport uses it. */
export interface PublisherHandle {
  readonly socket: PublisherSocket;
  release(): Promise<void>;
}

export async function openPublisher(options: ZeromqOptions): Promise<PublisherHandle | undefined> {
  if (options.relay.length > 0) {
    const socket = newSocket(options);
    for (const endpoint of options.relay) socket.connect(endpoint);
    const publisher = new PublisherSocket(socket, options.sendWaitMs);
    return { socket: publisher, release: () => publisher.close() };
  }
  if (options.bind.length === 0) return undefined;
  const key = options.bind.join(',');
  let entry = bound.get(key);
  if (!entry) {
    const opening = (async () => {
      const socket = newSocket(options);
      try {
        for (const endpoint of options.bind) await bindRetrying(socket, endpoint, options.lingerMs + 1000);
      } catch (error) {
        socket.close();
        bound.delete(key);
        throw new BusError(
          'BUSBAR_ERR_CONNECTION',
          `cannot bind the zeromq publisher to ${key}: ${(error as Error).message} (is another process bound there?)`,
          { cause: error },
        );
      }
      return new PublisherSocket(socket, options.sendWaitMs);
    })();
    entry = { socket: opening, users: 0 };
    bound.set(key, entry);
  }
  entry.users++;
  const held = entry;
  const socket = await held.socket.catch((error: unknown) => {
    held.users--;
    throw error;
  });
  let released = false;
  return {
    socket,
    release: async () => {
      if (released) return;
      released = true;
      if (--held.users === 0) {
        bound.delete(key);
        await socket.close();
      }
    },
  };
}
