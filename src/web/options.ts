import { type BatchSender, type Delivery, toDelivery } from './delivery.ts';
import { WebMessaging, type WebMessagingOptions } from './scope.ts';

/** What every adapter takes besides the bus (or delivery mode); `user` reads the authenticated user off a request. */
export type AdapterOptions<Request> = Omit<WebMessagingOptions, 'via'> & {
  /** The authenticated user's id for the `userid` header; each adapter has a default (see its file). */
  user?: (request: Request) => string | undefined;
};

/** A MessageBus (messages go to the broker) or a delivery mode: broker(bus), producers(...), outbox(...). */
export type Target = BatchSender | Delivery;

export function messagingFor(target: Target, options: Omit<WebMessagingOptions, 'via'>): WebMessaging {
  return new WebMessaging({ ...options, via: target === undefined ? (undefined as never) : toDelivery(target) });
}
