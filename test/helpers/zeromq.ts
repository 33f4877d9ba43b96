/** Ports for ZeroMQ tests: a free loopback port, and a bus URL that publishes on it and subscribes to itself. */
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A zeromq bus URL that binds `port` and subscribes to it: every transport of this process shares the socket. */
export function loopbackUrl(port: number, extra = ''): string {
  return `zeromq://127.0.0.1:${port}?bind=tcp://127.0.0.1:${port}${extra}`;
}
