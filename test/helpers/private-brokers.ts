/**
 * Private broker instances for the tests that restart or reconfigure a broker (the bridge's, conformance scenario 13,
 * a RabbitMQ memory alarm): each on its own free port and temporary directory, so a restart never touches the machine's own RabbitMQ, NATS or Redis, nor the shared Kafka. Every instance is killed
 * when the test process exits, even when it dies before its after() hooks.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { tcpReachable } from './brokers.ts';
import { freePort } from './ports.ts';

export { PersistentRedis } from './redis-aof.ts';
export { freePort };

const run = promisify(execFile);

async function waitForPort(port: number, timeoutMs: number, what: string, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await tcpReachable('127.0.0.1', port, 1000);
      return;
    } catch {
      if (!alive()) throw new Error(`${what} exited during start-up`);
      if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port} within ${timeoutMs} ms`);
      await sleep(200);
    }
  }
}

/** A child process in its own process group, so a stop reaches the whole tree (RabbitMQ: sh -> erl -> beam). */
class GroupProcess {
  #child: ChildProcess | undefined;
  readonly #killOnExit = () => this.#signal('SIGKILL');

  start(command: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, log: string): void {
    const child = spawn('sh', ['-c', `exec "$0" "$@" >>"${log}" 2>&1`, command, ...args], {
      env,
      cwd,
      detached: true,
      stdio: 'ignore',
    });
    this.#child = child;
    process.once('exit', this.#killOnExit);
    child.once('exit', () => process.off('exit', this.#killOnExit));
  }

  get alive(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  #signal(signal: NodeJS.Signals): void {
    const pid = this.#child?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {}
  }

  /** Stops the group with `signal`, then SIGKILL after `graceMs`; resolves once the leader exited. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 30_000): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const pid = child.pid!;
    const send = (s: NodeJS.Signals) => {
      try {
        process.kill(-pid, s);
      } catch {}
    };
    send(signal);
    const timer = setTimeout(() => send('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    // The leader is gone; make sure nothing of its group stays behind.
    send('SIGKILL');
  }
}

/** A private RabbitMQ node (its own node name, port, Mnesia dir and Erlang cookie), started from the Debian package. */
export class PrivateRabbit {
  readonly port: number;
  readonly dir: string;
  readonly #process = new GroupProcess();

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  /** `conf`: more rabbitmq.conf lines (e.g. a TLS listener); `plugins`: plugins to enable on this node only. */
  static async start(setup: { conf?: string; plugins?: readonly string[] } = {}): Promise<PrivateRabbit> {
    const port = await freePort();
    const rabbit = new PrivateRabbit(port, mkdtempSync(join(tmpdir(), 'busbar-rabbit-')));
    writeFileSync(join(rabbit.dir, 'env.conf'), `NODENAME=busbar${port}@localhost\nNODE_PORT=${port}\n`);
    writeFileSync(join(rabbit.dir, 'rabbitmq.conf'), `listeners.tcp.local = 127.0.0.1:${port}\n${setup.conf ?? ''}`);
    writeFileSync(join(rabbit.dir, 'enabled_plugins'), `[${(setup.plugins ?? []).join(',')}].\n`);
    await rabbit.#spawn();
    return rabbit;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  async #spawn(): Promise<void> {
    const d = this.dir;
    const env = {
      ...process.env,
      HOME: d,
      RABBITMQ_CONF_ENV_FILE: join(d, 'env.conf'),
      RABBITMQ_CONFIG_FILE: join(d, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(d, 'enabled_plugins'),
      RABBITMQ_MNESIA_BASE: join(d, 'mnesia'),
      RABBITMQ_LOG_BASE: join(d, 'log'),
      RABBITMQ_DIST_PORT: String(this.port + 20_000 > 65_000 ? this.port - 20_000 : this.port + 20_000),
      ERL_EPMD_ADDRESS: '127.0.0.1',
    };
    this.#process.start('/usr/lib/rabbitmq/bin/rabbitmq-server', [], env, d, join(d, 'out.log'));
    await waitForPort(this.port, 120_000, 'private rabbitmq-server', () => this.#process.alive);
  }

  /** A clean stop and start on the same data. */
  async restart(): Promise<void> {
    await this.#process.stop('SIGTERM');
    await this.#spawn();
  }

  /**
   * rabbitmqctl against this node (its own name and, through HOME, its own Erlang cookie); resolves with stdout. Each
   * call starts an Erlang VM: 35-120 s on a loaded machine, so the bound is generous.
   */
  async ctl(...args: string[]): Promise<string> {
    const { stdout } = await promisify(execFile)(
      '/usr/lib/rabbitmq/bin/rabbitmqctl',
      ['-n', `busbar${this.port}@localhost`, ...args],
      { env: { ...process.env, HOME: this.dir, ERL_EPMD_ADDRESS: '127.0.0.1' }, timeout: 240_000 },
    );
    return stdout;
  }

  async stop(): Promise<void> {
    await this.#process.stop('SIGTERM', 15_000);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A private nats-server with JetStream in its own store directory. */
export class PrivateNats {
  readonly port: number;
  readonly dir: string;
  readonly #process = new GroupProcess();

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  static async start(): Promise<PrivateNats> {
    const nats = new PrivateNats(await freePort(), mkdtempSync(join(tmpdir(), 'busbar-nats-')));
    await nats.#spawn();
    return nats;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async #spawn(): Promise<void> {
    const args = ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', join(this.dir, 'js')];
    this.#process.start(
      process.env.BUSBAR_TEST_NATS_SERVER ?? 'nats-server',
      args,
      process.env,
      this.dir,
      join(this.dir, 'out.log'),
    );
    // Recovering a JetStream store on a loaded machine takes a while: only a server that never listens fails.
    await waitForPort(this.port, 120_000, 'private nats-server', () => this.#process.alive);
  }

  /** A clean stop (SIGTERM: JetStream flushes its store; nats-server 2.9 has no per-write fsync) and start. */
  async restart(): Promise<void> {
    await this.#process.stop('SIGTERM');
    await this.#spawn();
  }

  async stop(): Promise<void> {
    await this.#process.stop('SIGTERM', 10_000);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const KAFKA_SCRIPT = new URL('../../scripts/brokers/kafka', import.meta.url).pathname;

/** A private single-node Kafka of scripts/brokers/kafka (BUSBAR_KAFKA_HOME and _PORT of its own). */
export class PrivateKafka {
  readonly port: number;
  readonly dir: string;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  static async start(): Promise<PrivateKafka> {
    let port = await freePort();
    // The controller listens on port + 1: find a pair that is free.
    while (!(await portFree(port + 1))) port = await freePort();
    const kafka = new PrivateKafka(port, mkdtempSync(join(tmpdir(), 'busbar-kafka-')));
    // The shared broker's resolved classpath, when there is one, spares a Maven run.
    const version = process.env.BUSBAR_KAFKA_VERSION ?? '4.1.1';
    const shared = join(
      process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
      'busbar/kafka',
      `classpath-${version}.txt`,
    );
    if (existsSync(shared)) copyFileSync(shared, join(kafka.dir, `classpath-${version}.txt`));
    const killOnExit = () => kafka.#killNow();
    process.once('exit', killOnExit);
    await kafka.#script('start');
    return kafka;
  }

  get url(): string {
    return `kafka://127.0.0.1:${this.port}`;
  }

  async #script(command: 'start' | 'stop' | 'restart'): Promise<void> {
    await run('bash', [KAFKA_SCRIPT, command], {
      env: { ...process.env, BUSBAR_KAFKA_HOME: this.dir, BUSBAR_KAFKA_PORT: String(this.port) },
      timeout: 240_000,
    });
  }

  #killNow(): void {
    try {
      const pid = Number(readFileSync(join(this.dir, 'run', 'kafka.pid'), 'utf8').trim());
      if (pid > 0) process.kill(pid, 'SIGKILL');
    } catch {}
  }

  async restart(): Promise<void> {
    await this.#script('restart');
  }

  async stop(): Promise<void> {
    await this.#script('stop').catch(() => this.#killNow());
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
