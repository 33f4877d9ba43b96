/**
 * The bus's own deadlines on broker calls (CORTX's send_timeout and admin_api_timeout). A call the broker has not
 * answered in time fails with a retryable BUSBAR_ERR_TIMEOUT. The call itself cannot be withdrawn: a send that timed
 * out may still be stored, so a retry can deliver it twice (at-least-once; consumers can dedupe by message id).
 */
import { BusError } from '../errors.ts';
import type { Transport, TransportAdmin } from '../transport/contract.ts';

export interface Deadlines {
  readonly sendTimeoutMs?: number | undefined;
  readonly adminTimeoutMs?: number | undefined;
}

function deadline<T>(call: Promise<T>, ms: number, what: string, option: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new BusError(
            'BUSBAR_ERR_TIMEOUT',
            `${what}: no answer from the broker within ${ms} ms (${option}); it may still complete: retry, or raise ${option}`,
          ),
        ),
      ms,
    );
  });
  return Promise.race([call, expired]).finally(() => clearTimeout(timer));
}

/** Every method of the admin, each bounded by `ms`; a Proxy, so methods a transport adds are bounded too. */
function boundedAdmin(admin: TransportAdmin, ms: number): TransportAdmin {
  return new Proxy(admin, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) =>
        deadline(Promise.resolve(value.apply(target, args)), ms, `admin call ${String(key)}`, 'adminTimeoutMs');
    },
  });
}

/** The transport itself when no deadline is set; otherwise a view of it whose publish and admin calls are bounded. */
export function withDeadlines(transport: Transport, { sendTimeoutMs, adminTimeoutMs }: Deadlines): Transport {
  if (sendTimeoutMs === undefined && adminTimeoutMs === undefined) return transport;
  const admin = adminTimeoutMs === undefined ? transport.admin : boundedAdmin(transport.admin, adminTimeoutMs);
  return new Proxy(transport, {
    get(target, key) {
      if (key === 'admin') return admin;
      if (key === 'publish' && sendTimeoutMs !== undefined) {
        return (type: string, batch: Parameters<Transport['publish']>[1]) =>
          deadline(
            target.publish(type, batch),
            sendTimeoutMs,
            `sending ${batch.length} message(s) to '${type}'`,
            'sendTimeoutMs',
          );
      }
      const value = Reflect.get(target, key, target);
      // Bound to the transport itself: its methods use private fields, which a Proxy as `this` does not have.
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
