/**
 * REST gateway: batched publish and pull+ack through `busbar serve`, each beside a bare node:http server that calls
 * the same transport directly (same broker file, same payloads, same HTTP client, same batch sizes). The ratio is
 * what the gateway's routing, validation, auth, leases and receipts cost.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageBus, resolveConfig } from '../src/index.ts';
import { buildMessage } from '../src/message/envelope.ts';
import { type RunningServer, startServer } from '../src/server/index.ts';
import type { Delivery, Subscription, Transport } from '../src/transport/contract.ts';
import { loadTransport } from '../src/transport/registry.ts';
import type { BenchCase, RunContext } from './harness.ts';
import { defineCase, type Tally } from './lib/case.ts';

const N = 2000;
const BATCH = 100;
const payload = { level: 'info', text: 'x'.repeat(80) };
const batchBody = JSON.stringify({ messages: Array.from({ length: BATCH }, () => ({ body: payload })) });

function readBody(req: import('node:http').IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The baseline: the least an HTTP front can do over the same transport. */
export function bareServer(transport: Transport, pullType: string): { server: Server; close(): Promise<void> } {
  const held = new Map<string, Delivery>();
  const ready: Delivery[] = [];
  let waiter: (() => void) | undefined;
  const subscription: Subscription = transport.consume({
    types: [pullType],
    group: 'bench',
    consumerId: 'bare',
    offset: 'earliest',
    prefetch: BATCH,
    ackTimeoutMs: 60_000,
  });
  void (async () => {
    for await (const delivery of subscription) {
      ready.push(delivery);
      waiter?.();
    }
  })();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'POST' && url.pathname.endsWith('/messages')) {
      const type = url.pathname.split('/')[3]!;
      const { messages } = JSON.parse(await readBody(req)) as { messages: { body: unknown }[] };
      const batch = messages.map((m) => buildMessage(type, 'bare', m.body));
      await transport.publish(type, batch);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ids: batch.map((m) => m.id) }));
    } else if (req.method === 'GET') {
      if (ready.length === 0) await new Promise<void>((resolve) => (waiter = resolve));
      const out = ready.splice(0, Number(url.searchParams.get('max') ?? BATCH)).map((d) => {
        const receipt = randomUUID();
        held.set(receipt, d);
        return { id: d.message.id, body: JSON.parse(Buffer.from(d.message.body).toString('utf8')), receipt };
      });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ messages: out }));
    } else {
      const { receipts } = JSON.parse(await readBody(req)) as { receipts: string[] };
      await Promise.all(receipts.map((r) => held.get(r)?.ack()));
      for (const r of receipts) held.delete(r);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ acked: receipts.length }));
    }
  });
  return {
    server,
    close: async () => {
      await subscription.close();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function publishRound(base: string, type: string, tally: Tally): Promise<void> {
  for (let sent = 0; sent < N; sent += BATCH) {
    await tally.timed(async () => {
      const res = await fetch(`${base}/v1/types/${type}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: batchBody,
      });
      if (res.status !== 200) throw new Error(`publish answered ${res.status}: ${await res.text()}`);
      const { ids } = (await res.json()) as { ids: string[] };
      tally.count(ids.length);
    });
  }
}

async function pullAckRound(base: string, type: string, tally: Tally): Promise<void> {
  while (tally.handled < N) {
    await tally.timed(async () => {
      const max = Math.min(BATCH, N - tally.handled);
      const res = await fetch(`${base}/v1/types/${type}/messages?group=bench&max=${max}&wait=5000`);
      const { messages } = (await res.json()) as { messages: { id: string; receipt: string }[] };
      const ack = await fetch(`${base}/v1/acks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ receipts: messages.map((m) => m.receipt) }),
      });
      if (ack.status !== 200) throw new Error(`ack answered ${ack.status}: ${await ack.text()}`);
      await ack.arrayBuffer();
      for (const m of messages) tally.received(m.id);
    });
  }
}

export default async function cases(): Promise<BenchCase[]> {
  let dir = '';
  let bus: MessageBus | undefined;
  let transport: Transport | undefined;
  let gateway: RunningServer | undefined;
  let bare: ReturnType<typeof bareServer> | undefined;
  let bareUrl = '';
  const pullGateway = `bench-pull-gw-${randomUUID()}`;
  const pullBare = `bench-pull-bare-${randomUUID()}`;
  const publishType = `bench-pub-${randomUUID()}`;

  const setup = async (context: RunContext) => {
    if (bus) return;
    dir = mkdtempSync(join(tmpdir(), 'busbar-bench-rest-'));
    // One transport serves both the gateway (through the bus over it) and the bare server (directly).
    const config = resolveConfig(`embedded:${join(dir, 'bus.db')}`);
    transport = await (await loadTransport(config.scheme))(config.transport);
    bus = new MessageBus(transport, config);
    const stock = Array.from({ length: BATCH }, () => buildMessage(pullGateway, 'bench', payload));
    // Every round's messages (warm-up, the timed rounds, one spare) are stored before the first.
    for (let i = 0; i < (N / BATCH) * (context.rounds + 2); i++) {
      await transport.publish(
        pullGateway,
        stock.map((m) => ({ ...m, id: randomUUID() })),
      );
      await transport.publish(
        pullBare,
        stock.map((m) => ({ ...m, type: pullBare, id: randomUUID() })),
      );
    }
    gateway = await startServer({ bus, port: 0 });
    bare = bareServer(transport, pullBare);
    await new Promise<void>((resolve) => bare!.server.listen(0, '127.0.0.1', resolve));
    bareUrl = `http://127.0.0.1:${(bare.server.address() as AddressInfo).port}`;
  };
  const teardown = async () => {
    await gateway?.close();
    await bare?.close();
    await bus?.close();
    rmSync(dir, { recursive: true, force: true });
    bus = undefined;
  };

  let finished = 0;
  const lastTeardown = async () => {
    if (++finished === 2) await teardown();
  };

  /** `round` against the gateway on `gatewayType`, beside the same round against the bare server on `bareType`. */
  const sideBySide = (
    name: string,
    round: (base: string, type: string, tally: Tally) => Promise<void>,
    gatewayType: string,
    bareType: string,
  ) =>
    defineCase({
      name,
      transport: 'rest/embedded',
      messages: N,
      setup,
      teardown: lastTeardown,
      subject: (tally) => round(gateway!.url, gatewayType, tally),
      baseline: (tally) => round(bareUrl, bareType, tally),
    });

  return [
    sideBySide(`publish batch ${BATCH} x${N / BATCH}`, publishRound, publishType, publishType),
    sideBySide(`pull+ack ${BATCH} x${N / BATCH}`, pullAckRound, pullGateway, pullBare),
  ];
}
