/**
 * Checks of admin arguments that every transport makes the same way, so each broker answers a bad call with the
 * same error. The bus layer checks most of them before it calls a transport; these hold for direct callers too.
 */
import { BusError } from '../errors.ts';
import type { Retention, TransportMessage } from './contract.ts';

/** A partition count: a whole number >= 1. */
export function checkPartitionCount(type: string, partitions: unknown): number {
  if (typeof partitions !== 'number' || !Number.isInteger(partitions) || partitions < 1) {
    throw new BusError(
      'BUSBAR_ERR_PARTITIONS',
      `cannot give message type '${type}' ${JSON.stringify(partitions)} partitions: use a whole number >= 1`,
    );
  }
  return partitions;
}

/** The error for asking a type for fewer partitions than it has: no broker removes partitions. */
export function partitionsCannotShrink(type: string, current: number, wanted: number): BusError {
  return new BusError(
    'BUSBAR_ERR_PARTITIONS',
    `message type '${type}' has ${current} partitions and cannot shrink to ${wanted}: partitions only grow; ask for ${current} or more`,
    { details: { partitions: current } },
  );
}

/** Retention limits: each absent or a finite number >= 0. */
export function checkRetention(retention: Retention): Retention {
  for (const name of ['maxAgeMs', 'maxBytes'] as const) {
    const value = retention[name];
    if (value !== undefined && !(typeof value === 'number' && value >= 0 && Number.isFinite(value))) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `retention ${name} must be a number >= 0, not ${JSON.stringify(value)}`,
      );
    }
  }
  return retention;
}

/** Every message of a batch carries its body as bytes (the bus encodes bodies before publishing). */
export function checkBatch(batch: readonly TransportMessage[]): void {
  for (const message of batch) {
    if (!(message.body instanceof Uint8Array)) {
      throw new BusError(
        'BUSBAR_ERR_INVALID_ARGUMENT',
        `message ${message.id} has a body that is not a Uint8Array: encode it first`,
      );
    }
  }
}
