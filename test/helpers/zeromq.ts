/** Ports for ZeroMQ tests: a free loopback port, and a bus URL that publishes on it and subscribes to itself. */
import { freePort } from './ports.ts';

export { freePort };

/** A zeromq bus URL that binds `port` and subscribes to it: every transport of this process shares the socket. */
export function loopbackUrl(port: number, extra = ''): string {
  return `zeromq://127.0.0.1:${port}?bind=tcp://127.0.0.1:${port}${extra}`;
}
