/**
 * Gateway replicas in tests: real `busbar serve` child processes sharing one broker and one config, and a tiny
 * round-robin HTTP load balancer in front of them (per request, like a plain L7 balancer; a backend that refuses
 * the connection is skipped, as nginx's proxy_next_upstream does, and anything else is a 502). Every process and
 * server is stopped by stop(), which tests call in their after hooks.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const bin = new URL('../../bin/busbar.js', import.meta.url).pathname;

export interface Replica {
  readonly url: string;
  /** Its Busbar-Replica id. */
  readonly id: string;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly stderr: () => string;
}

/** Starts `busbar serve --config <file> --port 0`; resolves once it listens and answered one request. */
export async function startReplica(configFile: string, env: Record<string, string> = {}): Promise<Replica> {
  const child = spawn(process.execPath, [bin, 'serve', '--config', configFile, '--port', '0'], {
    env: { ...process.env, BUSBAR_BROKER: '', BUSBAR_CONFIG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`busbar serve did not start within 30 s: ${stderr}`)), 30_000);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const found = /listening on (\S+)/.exec(line);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]!);
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`busbar serve exited (${code}) before listening: ${stderr}`));
    });
  }).catch((error) => {
    child.kill('SIGKILL');
    throw error;
  });
  const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(10_000) });
  await health.arrayBuffer();
  const id = health.headers.get('busbar-replica') ?? '';
  return { url, id, child, exited, stderr: () => stderr };
}

/** Kills a replica (SIGKILL unless told) and waits, at most 20 s, for it to be gone. */
export async function stopReplica(replica: Replica, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (replica.child.exitCode === null && replica.child.signalCode === null) replica.child.kill(signal);
  const timeout = new Promise<void>((resolve) => setTimeout(resolve, 20_000).unref());
  await Promise.race([replica.exited, timeout]);
  if (replica.child.exitCode === null && replica.child.signalCode === null) replica.child.kill('SIGKILL');
}

/** A per-request round-robin HTTP load balancer. */
export class RoundRobinProxy {
  readonly #server: Server;
  readonly #agent = new Agent({ keepAlive: true, maxSockets: 64 });
  #backends: string[];
  #next = 0;
  url = '';

  constructor(backends: string[]) {
    this.#backends = [...backends];
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  set backends(list: string[]) {
    this.#backends = [...list];
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.url;
  }

  async #handle(req: IncomingMessage, res: import('node:http').ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const backends = this.#backends;
    for (let tries = 0; tries < backends.length; tries++) {
      const backend = new URL(backends[this.#next++ % backends.length]!);
      const outcome = await new Promise<'refused' | 'done'>((resolve) => {
        const upstream = httpRequest(
          {
            host: backend.hostname,
            port: backend.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, host: backend.host },
            agent: this.#agent,
          },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
            answer.once('end', () => resolve('done'));
            answer.once('error', () => {
              res.destroy();
              resolve('done');
            });
          },
        );
        upstream.once('error', (error: NodeJS.ErrnoException) => {
          if (error.code === 'ECONNREFUSED') return resolve('refused');
          if (!res.headersSent) {
            res.writeHead(502, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ error: { code: 'PROXY', message: `upstream failed: ${error.code}` } }));
          } else res.destroy();
          resolve('done');
        });
        upstream.end(body);
      });
      if (outcome === 'done') return;
    }
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'PROXY', message: 'no backend accepted the connection' } }));
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    this.#agent.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

export interface ClusterOptions {
  /** The broker URL every replica uses. */
  broker: string;
  /** The config file's `server` section (receiptSecret, limits, ...). */
  server: Record<string, unknown>;
  replicas?: number;
  /** Written beside the broker settings (e.g. ackTimeoutMs). */
  extra?: Record<string, unknown>;
}

export interface Cluster {
  readonly replicas: Replica[];
  readonly proxy: RoundRobinProxy;
  readonly configFile: string;
  /** Starts one more replica with the same config (its URL joins the proxy's list). */
  add(env?: Record<string, string>): Promise<Replica>;
  stop(): Promise<void>;
}

/** N replicas on one config file in `dir`, behind a round-robin proxy. */
export async function startCluster(dir: string, options: ClusterOptions): Promise<Cluster> {
  const configFile = join(dir, `busbar-${Math.random().toString(36).slice(2, 8)}.json`);
  writeFileSync(configFile, JSON.stringify({ broker: options.broker, ...options.extra, server: options.server }));
  const replicas: Replica[] = [];
  const proxy = new RoundRobinProxy([]);
  const cluster: Cluster = {
    replicas,
    proxy,
    configFile,
    async add(env) {
      const replica = await startReplica(configFile, env);
      replicas.push(replica);
      proxy.backends = replicas.map((r) => r.url);
      return replica;
    },
    async stop() {
      await proxy.close().catch(() => {});
      await Promise.all(replicas.map((r) => stopReplica(r)));
    },
  };
  try {
    await proxy.listen();
    const started = await Promise.allSettled(
      Array.from({ length: options.replicas ?? 3 }, () => startReplica(configFile)),
    );
    for (const s of started) if (s.status === 'fulfilled') replicas.push(s.value);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    proxy.backends = replicas.map((r) => r.url);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
