/** Sending already-built messages through the bus again, unchanged: the outbox relay and the web delivery modes. */
import { message } from '../bus/producer.ts';
import type { TransportMessage } from '../transport/contract.ts';

/** Splits messages into runs of one type, in order, so sending run after run keeps their order. */
export function runsByType(messages: readonly TransportMessage[]): Array<[string, TransportMessage[]]> {
  const runs: Array<[string, TransportMessage[]]> = [];
  for (const m of messages) {
    const last = runs.at(-1);
    if (last && last[0] === m.type) last[1].push(m);
    else runs.push([m.type, [m]]);
  }
  return runs;
}

/** A built message as bus.sendBatch() / producer.send() take it: same id, time, source, key, headers and bytes. */
export function resend(m: TransportMessage): unknown {
  return message(m.body, {
    id: m.id,
    time: m.time,
    source: m.source,
    key: m.key,
    headers: { ...m.headers },
    contentType: m.contentType,
  });
}
