/**
 * URL scheme -> transport module. Modules load lazily, so a RabbitMQ user never loads the Kafka client.
 * Adding a transport = a folder under src/transports/ whose index.ts default-exports a TransportFactory,
 * plus one line here.
 */
import { BusError } from '../errors.ts';
import type { Capabilities, TransportFactory } from './contract.ts';

type Loader = () => Promise<{ default: TransportFactory }>;

const TRANSPORTS: Record<string, { name: string; load: Loader; library?: string }> = {
  'embedded:': { name: 'embedded', load: () => import('../transports/embedded/index.ts') },
  'memory:': { name: 'memory', load: () => import('../transports/memory/index.ts') },
  'kafka:': { name: 'kafka', load: () => import('../transports/kafka/index.ts'), library: '@platformatic/kafka' },
  'amqp:': { name: 'rabbitmq', load: () => import('../transports/rabbitmq/index.ts'), library: 'amqplib' },
  'amqps:': { name: 'rabbitmq', load: () => import('../transports/rabbitmq/index.ts'), library: 'amqplib' },
  'redis:': { name: 'redis', load: () => import('../transports/redis/index.ts'), library: 'redis' },
  'rediss:': { name: 'redis', load: () => import('../transports/redis/index.ts'), library: 'redis' },
  'nats:': { name: 'nats', load: () => import('../transports/nats/index.ts'), library: '@nats-io/transport-node' },
  'mqtt:': { name: 'mqtt', load: () => import('../transports/mqtt/index.ts'), library: 'mqtt' },
  'mqtts:': { name: 'mqtt', load: () => import('../transports/mqtt/index.ts'), library: 'mqtt' },
  'amqp10:': { name: 'amqp10', load: () => import('../transports/amqp10/index.ts'), library: 'rhea' },
  'amqps10:': { name: 'amqp10', load: () => import('../transports/amqp10/index.ts'), library: 'rhea' },
  'stomp:': { name: 'stomp', load: () => import('../transports/stomp/index.ts'), library: '@stomp/stompjs' },
  'stomps:': { name: 'stomp', load: () => import('../transports/stomp/index.ts'), library: '@stomp/stompjs' },
  'stomp+ssl:': { name: 'stomp', load: () => import('../transports/stomp/index.ts'), library: '@stomp/stompjs' },
  'zeromq:': { name: 'zeromq', load: () => import('../transports/zeromq/index.ts'), library: 'zeromq' },
  'zmq+tcp:': { name: 'zeromq', load: () => import('../transports/zeromq/index.ts'), library: 'zeromq' },
};

export function transportNameFor(scheme: string): string | undefined {
  return TRANSPORTS[scheme]?.name;
}

export function knownSchemes(): string[] {
  return Object.keys(TRANSPORTS);
}

export async function loadTransport(scheme: string): Promise<TransportFactory> {
  const entry = TRANSPORTS[scheme];
  if (!entry) {
    throw new BusError(
      'BUSBAR_ERR_UNKNOWN_SCHEME',
      `no transport for URL scheme '${scheme}': use one of ${knownSchemes().join(' ')}`,
    );
  }
  try {
    return (await entry.load()).default;
  } catch (error) {
    throw new BusError(
      'BUSBAR_ERR_TRANSPORT_LOAD',
      `could not load the ${entry.name} transport${entry.library ? ` (is '${entry.library}' installed? run npm install ${entry.library})` : ''}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** Every transport's name, once each (several schemes may share one). */
export function transportNames(): string[] {
  return [...new Set(Object.values(TRANSPORTS).map((t) => t.name))];
}

/** A transport's declared capabilities: its module exports them as `<NAME>_CAPABILITIES`. */
export async function loadCapabilities(name: string): Promise<Capabilities> {
  const entry = Object.values(TRANSPORTS).find((t) => t.name === name);
  if (!entry) throw new BusError('BUSBAR_ERR_UNKNOWN_SCHEME', `no transport named '${name}'`);
  const module = (await entry.load()) as Record<string, unknown>;
  const capabilities = module[`${name.toUpperCase()}_CAPABILITIES`] as Capabilities | undefined;
  if (!capabilities) throw new Error(`src/transports/${name}/index.ts must export ${name.toUpperCase()}_CAPABILITIES`);
  return capabilities;
}
