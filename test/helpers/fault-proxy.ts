/**
 * A TCP proxy the tests put between busbar and a network broker, to inject faults on demand:
 * - cut(): reset every open connection (both sides see ECONNRESET), as a network drop or a broker crash would;
 * - refuse(true): reset every new connection as soon as it is accepted (a broker that is down), until refuse(false);
 * - stall(true): hold all traffic in both directions (connections stay open, nothing moves), until stall(false);
 * - slow({ delayMs, bytesPerSec }): delay every chunk and/or cap the throughput per direction; slow() restores.
 *
 * It knows nothing of any protocol, so it works in front of every broker (AMQP, Redis, NATS, Kafka's bootstrap
 * only: Kafka tells clients to connect to its advertised listeners directly). Toxiproxy does the same as a Go
 * server; this is 150 lines of node:net with nothing to install. Everything it opens is closed by close().
 */
import { createServer, type Server, Socket } from 'node:net';

export interface SlowOptions {
  /** Each chunk is forwarded this many ms after it arrived (order kept). */
  delayMs?: number;
  /** At most this many bytes per second per direction. */
  bytesPerSec?: number;
}

interface Pipe {
  client: Socket;
  upstream: Socket;
}

export class FaultProxy {
  readonly host = '127.0.0.1';
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #pipes = new Set<Pipe>();
  readonly #wakeups = new Set<() => void>();
  #refusing = false;
  #stalled = false;
  #slow: SlowOptions = {};
  #port = 0;
  /** Connections accepted in total, and how many were cut or refused. */
  readonly counts = { accepted: 0, cut: 0, refused: 0 };

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = createServer({ noDelay: true }, (client) => this.#accept(client));
  }

  static async start(target: { host: string; port: number }, port = 0): Promise<FaultProxy> {
    const proxy = new FaultProxy(target);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject);
      proxy.#server.listen(port, proxy.host, () => resolve());
    });
    proxy.#port = (proxy.#server.address() as { port: number }).port;
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  /** Open client connections. */
  get connections(): number {
    return this.#pipes.size;
  }

  /** `url` with its host:port (the first, after any credentials) replaced by the proxy's. */
  url(url: string): string {
    return url.replace(/^([a-z0-9+.-]+:\/\/(?:[^@/]*@)?)[^/?,]+/i, `$1${this.host}:${this.#port}`);
  }

  /** Resets every open connection. New ones are accepted again at once unless refuse(true). */
  cut(): void {
    for (const pipe of [...this.#pipes]) {
      this.counts.cut++;
      this.#drop(pipe);
    }
  }

  /** While on, every new connection is reset as soon as it is accepted; open ones are untouched (cut() them). */
  refuse(on = true): void {
    this.#refusing = on;
  }

  /** While on, no byte moves in either direction; what arrives is held and forwarded, in order, when turned off. */
  stall(on = true): void {
    this.#stalled = on;
    if (!on) this.#wake();
  }

  /** Delays and/or throttles traffic from now on; slow() with no options restores full speed. */
  slow(options: SlowOptions = {}): void {
    this.#slow = { ...options };
    this.#wake();
  }

  async close(): Promise<void> {
    this.#refusing = true;
    this.cut();
    this.#wake();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #wake(): void {
    for (const wake of [...this.#wakeups]) wake();
  }

  #accept(client: Socket): void {
    if (this.#refusing) {
      this.counts.refused++;
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    this.counts.accepted++;
    const upstream = new Socket();
    const pipe: Pipe = { client, upstream };
    this.#pipes.add(pipe);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.on('error', () => this.#drop(pipe));
    upstream.on('error', () => this.#drop(pipe));
    client.on('close', () => this.#drop(pipe));
    upstream.on('close', () => this.#drop(pipe));
    client.pause();
    upstream.connect(this.#target.port, this.#target.host, () => {
      this.#forward(pipe, client, upstream);
      this.#forward(pipe, upstream, client);
    });
  }

  #drop(pipe: Pipe): void {
    if (!this.#pipes.delete(pipe)) return;
    if (!pipe.client.destroyed) pipe.client.resetAndDestroy();
    if (!pipe.upstream.destroyed) pipe.upstream.resetAndDestroy();
  }

  /** Moves chunks from `from` to `to` one at a time, honouring stall and slow, pausing `from` while behind. */
  #forward(pipe: Pipe, from: Socket, to: Socket): void {
    const chunks: Array<{ data: Buffer; at: number }> = [];
    let queued = 0;
    let pumping = false;
    const open = () => this.#pipes.has(pipe);
    const wait = (ms: number | undefined) =>
      new Promise<void>((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        const done = () => {
          if (timer) clearTimeout(timer);
          this.#wakeups.delete(done);
          resolve();
        };
        this.#wakeups.add(done);
        if (ms !== undefined) timer = setTimeout(done, ms);
      });
    const pump = async () => {
      pumping = true;
      while (chunks.length > 0 && open()) {
        if (this.#stalled) {
          await wait(undefined);
          continue;
        }
        const { delayMs = 0, bytesPerSec } = this.#slow;
        const due = chunks[0]!.at + delayMs - Date.now();
        if (due > 0) {
          await wait(due);
          continue;
        }
        const chunk = chunks.shift()!;
        queued -= chunk.data.length;
        if (queued < 1 << 20) from.resume();
        to.write(chunk.data);
        if (bytesPerSec) await wait(Math.ceil((chunk.data.length / bytesPerSec) * 1000));
      }
      pumping = false;
    };
    from.on('data', (data: Buffer) => {
      chunks.push({ data, at: Date.now() });
      queued += data.length;
      if (queued >= 1 << 20) from.pause();
      if (!pumping) void pump();
    });
    from.on('end', () => {
      const finish = () => (chunks.length === 0 || !open() ? to.end() : setTimeout(finish, 5));
      finish();
    });
    from.resume();
  }
}
