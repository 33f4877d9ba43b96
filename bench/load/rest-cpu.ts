/**
 * CPU time per message of the serving process, pull+ack in batches of 100: `busbar serve` beside bench/rest.ts's
 * bare node:http server, each in its own process on one embedded file. Wall-clock ratios swing widely on a busy
 * machine; the server's own CPU time (utime + stime from /proc) is far less disturbed by other load.
 *
 *   ./node_modules/.bin/node bench/load/rest-cpu.ts [--messages 10000] [--rounds 3]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { resolveConfig } from '../../src/index.ts';
import { buildMessage } from '../../src/message/envelope.ts';
import { loadTransport } from '../../src/transport/registry.ts';
import { bareServer } from '../rest.ts';

const BATCH = 100;
const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    bare: { type: 'string' },
  },
});

if (values.bare) {
  // The child that serves the bare baseline on the broker URL it was given.
  const config = resolveConfig(values.bare);
  const bare = bareServer(await (await loadTransport(config.scheme))(config.transport), 'bare');
  await new Promise<void>((resolve) => bare.server.listen(0, '127.0.0.1', resolve));
  console.log(`listening on http://127.0.0.1:${(bare.server.address() as AddressInfo).port}`);
} else {
  const N = Number(values.messages);
  const ROUNDS = Number(values.rounds);
  const dir = mkdtempSync(join(tmpdir(), 'busbar-rest-cpu-'));
  const url = `embedded:${join(dir, 'bus.db')}`;
  const config = resolveConfig(url);
  const transport = await (await loadTransport(config.scheme))(config.transport);
  const payload = { level: 'info', text: 'x'.repeat(80) };
  // Every round's messages (and a warm-up's) are stored before the first.
  for (let i = 0; i < (N / BATCH) * (ROUNDS + 1); i++) {
    for (const type of ['gateway', 'bare']) {
      await transport.publish(
        type,
        Array.from({ length: BATCH }, () => buildMessage(type, 'bench', payload)),
      );
    }
  }
  await transport.close();
  writeFileSync(join(dir, 'busbar.json'), JSON.stringify({ broker: url }));

  const start = (args: string[]) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    return new Promise<{ pid: number; base: string; stop: () => void }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not listen within 60 s`)), 60_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const found = /listening on (\S+)/.exec(line);
        if (!found) return;
        clearTimeout(timer);
        resolve({ pid: child.pid!, base: found[1]!, stop: () => child.kill() });
      });
    });
  };
  const bin = new URL('../../bin/busbar.js', import.meta.url).pathname;
  const servers = {
    gateway: await start([bin, 'serve', '--config', join(dir, 'busbar.json'), '--port', '0']),
    bare: await start([new URL(import.meta.url).pathname, '--bare', url]),
  };
  const cpuMs = (pid: number) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  };

  /** Pulls and acks N messages; the server's CPU µs per message. */
  const round = async (side: 'gateway' | 'bare'): Promise<number> => {
    const { pid, base } = servers[side];
    const before = cpuMs(pid);
    for (let got = 0; got < N; ) {
      const res = await fetch(
        `${base}/v1/types/${side}/messages?group=bench&max=${Math.min(BATCH, N - got)}&wait=5000`,
      );
      const { messages } = (await res.json()) as { messages: { receipt: string }[] };
      const ack = await fetch(`${base}/v1/acks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ receipts: messages.map((m) => m.receipt) }),
      });
      if (ack.status !== 200) throw new Error(`ack answered ${ack.status}: ${await ack.text()}`);
      await ack.arrayBuffer();
      got += messages.length;
    }
    return ((cpuMs(pid) - before) * 1000) / N;
  };

  try {
    await round('gateway');
    await round('bare');
    const rows: { gateway: number; bare: number }[] = [];
    for (let i = 0; i < ROUNDS; i++) rows.push({ gateway: await round('gateway'), bare: await round('bare') });
    console.log(
      JSON.stringify({
        load: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
        gatewayUsPerMessage: rows.map((r) => Math.round(r.gateway)),
        bareUsPerMessage: rows.map((r) => Math.round(r.bare)),
        bareOverGateway: rows.map((r) => Number((r.bare / r.gateway).toFixed(2))),
      }),
    );
  } finally {
    servers.gateway.stop();
    servers.bare.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
