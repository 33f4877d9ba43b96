/**
 * The SUB socket: connected to every endpoint of the URL, subscribed to the topic of each type a group of this
 * transport reads, and read without pause (a slow application costs its group's bounded buffer, never the socket).
 *
 * Readiness: ZeroMQ subscribes asynchronously, so a message published right after subscribe() may be missed (the
 * "slow joiner"). When this transport's own publications come back to it (it binds a port it also subscribes to,
 * or it publishes through a relay it subscribes to), probe() publishes a probe message and resolves once it came
 * back: from then on the publisher has every earlier subscription, and everything this process published before
 * the probe has arrived. The transport makes a new group's `ready` wait for that (index.ts).
 */
import { randomUUID } from 'node:crypto';
import * as zmq from 'zeromq';
import type { PublisherSocket } from './publisher.ts';
import type { Topics } from './wire.ts';

export type FrameHandler = (type: string, body: Uint8Array) => void;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class SubscriberSocket {
  readonly #socket: zmq.Subscriber;
  readonly #topics: Topics;
  readonly #onMessage: FrameHandler;
  readonly #probes = new Map<string, () => void>();
  readonly #subscribed = new Set<string>();
  readonly #loop: Promise<void>;
  #closed = false;

  constructor(
    endpoints: readonly string[],
    highWaterMark: number,
    topics: Topics,
    onMessage: FrameHandler,
    onError: (error: unknown) => void,
  ) {
    this.#socket = new zmq.Subscriber({ receiveHighWaterMark: highWaterMark, linger: 0 });
    for (const endpoint of endpoints) this.#socket.connect(endpoint);
    this.#topics = topics;
    this.#onMessage = onMessage;
    this.#loop = this.#read().catch(onError);
  }

  async #read(): Promise<void> {
    try {
      // The topic of the previous message and its type: messages mostly come in runs of one topic, and comparing
      // bytes costs less than decoding the topic again.
      let lastTopic: Buffer | undefined;
      let lastType: string | undefined;
      // receive() itself, not the socket's async iterator, which wraps every message in one more async call.
      while (!this.#closed) {
        const frames = await this.#socket.receive();
        const topicFrame = frames[0];
        const body = frames[1];
        if (!topicFrame || !body) continue;
        let type = lastType;
        if (lastTopic === undefined || !topicFrame.equals(lastTopic)) {
          type = this.#topics.typeOf(topicFrame.toString('utf8'));
          lastTopic = topicFrame;
          lastType = type;
        }
        if (type === undefined) continue;
        if (type.startsWith('_busbar.probe.')) {
          this.#probes.get(type.slice('_busbar.probe.'.length))?.();
          continue;
        }
        this.#onMessage(type, body);
      }
    } catch (error) {
      if (!this.#closed) throw error;
    }
  }

  /** Subscribes to the topic of `type` (once). */
  subscribe(type: string): void {
    if (this.#subscribed.has(type)) return;
    this.#subscribed.add(type);
    this.#socket.subscribe(this.#topics.topic(type));
  }

  unsubscribe(type: string): void {
    if (!this.#subscribed.delete(type) || this.#closed) return;
    this.#socket.unsubscribe(this.#topics.topic(type));
  }

  /**
   * Publishes probes through `publisher` until one comes back or `timeoutMs` pass. Once one came back, the
   * subscriptions made before it are in place, and every message this process published before it has arrived.
   */
  async probe(publisher: PublisherSocket, timeoutMs: number): Promise<void> {
    const id = randomUUID();
    const topic = this.#topics.probe(id);
    let arrived = false;
    const back = new Promise<void>((resolve) => {
      this.#probes.set(id, () => {
        arrived = true;
        resolve();
      });
    });
    this.#socket.subscribe(topic);
    const frame = JSON.stringify({ topic, msg: {}, timestamp: Math.floor(Date.now() / 1000), msg_id: id, i: 0 });
    try {
      const deadline = Date.now() + timeoutMs;
      for (let pause = 5; !arrived && !this.#closed && Date.now() < deadline; pause = Math.min(pause * 2, 100)) {
        await publisher.send([[topic, frame]]).catch(() => {});
        await Promise.race([back, sleep(pause)]);
      }
    } finally {
      this.#probes.delete(id);
      if (!this.#closed) this.#socket.unsubscribe(topic);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
    await this.#loop;
  }
}
