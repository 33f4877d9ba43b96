/**
 * Reading deliveries in tests without hanging: take() gives up after a quiet period, and a next() it abandoned is
 * handed to the following take() so that no delivery is lost between calls.
 */
import type { Delivery, Subscription } from '../../src/transport/contract.ts';

const iterators = new WeakMap<Subscription, AsyncIterator<Delivery>>();
/** Pending next() calls left over by a timed-out take(), to be awaited first by the next take(). */
const leftovers = new WeakMap<Subscription, Promise<IteratorResult<Delivery>>>();

/**
 * Takes up to `count` deliveries, giving up after `timeoutMs` without a new one. The default is long for a local
 * broker on a loaded machine; a caller proving that nothing more comes passes its own, shorter quiet period.
 */
export async function take(subscription: Subscription, count: number, timeoutMs = 15_000): Promise<Delivery[]> {
  const got: Delivery[] = [];
  let iterator = iterators.get(subscription);
  if (!iterator) {
    iterator = subscription[Symbol.asyncIterator]();
    iterators.set(subscription, iterator);
  }
  while (got.length < count) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const pending = leftovers.get(subscription) ?? iterator.next();
    leftovers.delete(subscription);
    const next = await Promise.race([pending, timeout]);
    clearTimeout(timer);
    if (next === 'timeout') {
      leftovers.set(subscription, pending);
      break;
    }
    if (next.done) break;
    got.push(next.value);
  }
  return got;
}
