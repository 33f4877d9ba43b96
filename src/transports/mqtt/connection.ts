/**
 * MQTT.js plumbing shared by the transport's clients: connecting with a clear BusError, confirmed QoS 1 publishes
 * with a deadline, manual PUBACKs, and an end that never hangs on a dead connection.
 */
import { randomBytes } from 'node:crypto';
import mqtt, { type IClientOptions, type IClientPublishOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import { BusError, type ErrorCode } from '../../errors.ts';

/** PUBACK reason code 0x10: accepted, but no subscription matched, so nobody will ever receive the message. */
const NO_MATCHING_SUBSCRIBERS = 0x10;
/** Per client, the packet ids of publishes the broker acknowledged with NO_MATCHING_SUBSCRIBERS. */
const unroutedIds = new WeakMap<MqttClient, Set<number>>();

/** Passed to MQTT.js's handleMessage callback so that it skips its automatic PUBACK: busbar acks when the app does. */
const MANUAL_ACK = new Error('busbar sends the PUBACK when the delivery is settled');

interface ClientInternals {
  _sendPacket(packet: object, cb?: (error?: Error) => void, cbStorePut?: () => void, noStore?: boolean): void;
  outgoing: Record<number, unknown>;
}

export function newSessionId(...parts: string[]): string {
  return [...parts.map((p) => encodeURIComponent(p)), randomBytes(6).toString('hex')].join('.');
}

function reasonCodeOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export function connectionError(error: unknown, endpoint: string): BusError {
  const code = reasonCodeOf(error);
  const reason = error instanceof Error ? error.message : String(error);
  if (code === 4 || code === 5 || code === 134 || code === 135) {
    return new BusError(
      'BUSBAR_ERR_AUTH',
      `the MQTT broker at ${endpoint} refused the credentials (${reason}): check username and password`,
      {
        cause: error,
      },
    );
  }
  return new BusError(
    'BUSBAR_ERR_CONNECTION',
    `cannot connect to the MQTT broker at ${endpoint}: ${reason}; is it running?`,
    {
      cause: error,
    },
  );
}

/**
 * Opens a client. `onMessage` (if given) receives every PUBLISH and must arrange its PUBACK with `puback()`; it is
 * installed before the first packet can arrive, so nothing a resumed session resends is missed.
 */
export function openClient(
  base: Readonly<IClientOptions>,
  overrides: IClientOptions,
  onMessage?: (packet: IPublishPacket) => void,
): { client: MqttClient; connected: Promise<void> } {
  const client = mqtt.connect({ ...base, ...overrides });
  if (onMessage) {
    client.handleMessage = (packet, done) => {
      onMessage(packet);
      done(MANUAL_ACK);
    };
  }
  const unrouted = new Set<number>();
  unroutedIds.set(client, unrouted);
  client.on('packetreceive', (packet) => {
    if (packet.cmd === 'puback' && packet.reasonCode === NO_MATCHING_SUBSCRIBERS) unrouted.add(packet.messageId!);
    // Small packets (PUBACKs above all) must not wait for Nagle's algorithm; MQTT.js leaves it on.
    else if (packet.cmd === 'connack') (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  });
  const endpoint = (base.servers ?? [{ host: base.host, port: base.port }])
    .map((s) => `${s.host}:${s.port}`)
    .join(', ');
  // With several servers MQTT.js tries the next one on each reconnect: give up only when every one has failed.
  let attemptsLeft = Math.max(1, base.servers?.length ?? 1);
  const connected = new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => {
      if (--attemptsLeft > 0 && overrides.reconnectPeriod !== 0) return;
      client.removeListener('error', onError);
      client.removeListener('connect', onConnect);
      client.end(true);
      reject(connectionError(error, endpoint));
    };
    const onConnect = () => {
      client.removeListener('error', onError);
      resolve();
    };
    client.on('error', onError);
    client.once('connect', onConnect);
  });
  // After the first connect MQTT.js reconnects by itself; errors then are reported through the operations they fail.
  client.on('error', () => {});
  return { client, connected };
}

/** Sends the PUBACK for a delivery received on the current connection (a later connection resends it instead). */
export function puback(client: MqttClient, messageId: number): void {
  if (!client.connected) return;
  (client as unknown as ClientInternals)._sendPacket(
    { cmd: 'puback', messageId, reasonCode: 0 },
    undefined,
    undefined,
    true,
  );
}

function publishError(error: unknown, topic: string): BusError {
  const code = reasonCodeOf(error);
  const reason = error instanceof Error ? error.message : String(error);
  let busCode: ErrorCode = 'BUSBAR_ERR_PUBLISH';
  let retryable = true;
  if (code === 0x87) [busCode, retryable] = ['BUSBAR_ERR_FORBIDDEN', false];
  else if (code === 0x95) [busCode, retryable] = ['BUSBAR_ERR_MESSAGE_TOO_LARGE', false];
  else if (code === 0x90 || code === 0x99) retryable = false;
  return new BusError(
    busCode,
    `the MQTT broker did not accept a message on ${topic}: ${reason}${retryable ? '; retry the send' : ''}`,
    {
      cause: error,
      retryable,
    },
  );
}

/**
 * Resolves once the broker confirmed (PUBACK) a QoS 1 publish; rejects with a BusError after `timeoutMs`, and
 * (retryably) when `requireSubscriber` says a PUBACK "no matching subscribers" means the message would be lost.
 */
export function publishConfirmed(
  client: MqttClient,
  topic: string,
  payload: Buffer | string,
  options: IClientPublishOptions,
  timeoutMs: number,
  requireSubscriber: () => boolean = () => false,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new BusError(
          'BUSBAR_ERR_TIMEOUT',
          `the MQTT broker did not confirm a message on ${topic} within ${timeoutMs} ms (is it reachable?); retry the send`,
        ),
      );
    }, timeoutMs);
    client.publish(topic, payload, { qos: 1, ...options }, (error, packet) => {
      clearTimeout(timer);
      const messageId = packet?.messageId;
      const unrouted = messageId !== undefined && unroutedIds.get(client)?.delete(messageId) === true;
      if (error) reject(publishError(error, topic));
      else if (unrouted && requireSubscriber()) {
        reject(
          new BusError(
            'BUSBAR_ERR_PUBLISH',
            `no subscription matched ${topic} although consumers of it exist (the broker restarted and they have not resubscribed yet?); retry the send`,
            { details: { unrouted: true } },
          ),
        );
      } else resolve();
    });
  });
}

/** Disconnects cleanly (DISCONNECT with `properties`) when connected and idle, otherwise drops the connection. */
export async function endClient(client: MqttClient, properties?: { sessionExpiryInterval?: number }): Promise<void> {
  const busy = Object.keys((client as unknown as ClientInternals).outgoing).length > 0;
  if (client.connected && !busy) {
    await client.endAsync(false, properties ? { properties } : {});
  } else {
    await client.endAsync(true);
  }
}

export function bufferOf(body: Uint8Array): Buffer {
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}
