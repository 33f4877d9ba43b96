/**
 * A private, persistent redis-server for restart tests: the machine's Redis on :6379 keeps nothing on disk, so
 * these tests start their own with `--appendonly yes --appendfsync always` (an XADD reply then means "on disk"),
 * on a free port and a temporary directory, kill it hard mid-stream and start it again on the same files.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

export const REDIS_SERVER = process.env.BUSBAR_TEST_REDIS_SERVER ?? 'redis-server';

/** Throws unless a redis-server binary runs here (the tests that start their own server need one). */
export function checkRedisServerBinary(): void {
  const result = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(
      `cannot run '${REDIS_SERVER}' (set BUSBAR_TEST_REDIS_SERVER): ${result.error?.message ?? result.stderr}`,
    );
  }
}

/** Resolves once the server answers PING with PONG (so it finished loading its AOF). */
async function waitForPong(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answered = await new Promise<boolean>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.setTimeout(500, () => socket.destroy());
      socket.once('connect', () => socket.write('PING\r\n'));
      socket.once('data', (data) => {
        socket.destroy();
        // -NOAUTH: a server with a password, answering too.
        resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()));
      });
      socket.once('close', () => resolve(false));
      socket.once('error', () => resolve(false));
    });
    if (answered) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer within ${timeoutMs} ms`);
    await sleep(50);
  }
}

export class PersistentRedis {
  readonly port: number;
  readonly dir: string;
  readonly #extraArgs: readonly string[];
  #process: ChildProcess | undefined;

  private constructor(port: number, dir: string, extraArgs: readonly string[]) {
    this.port = port;
    this.dir = dir;
    this.#extraArgs = extraArgs;
  }

  /** `extraArgs` go to redis-server as given (e.g. `--requirepass`, `--tls-port`). */
  static async start(extraArgs: readonly string[] = []): Promise<PersistentRedis> {
    const server = new PersistentRedis(await freePort(), mkdtempSync(join(tmpdir(), 'busbar-redis-')), extraArgs);
    await server.#spawn();
    return server;
  }

  static freePort(): Promise<number> {
    return freePort();
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async #spawn(): Promise<void> {
    const child = spawn(
      REDIS_SERVER,
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        '--daemonize',
        'no',
        '--logfile',
        join(this.dir, 'redis.log'),
        ...this.#extraArgs,
      ],
      { stdio: 'ignore' },
    );
    this.#process = child;
    // Never outlive the test process, even when it dies before its after() hooks.
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    child.once('exit', () => process.off('exit', killOnExit));
    // Loading a long append-only file on a loaded machine takes a while: only a server that never answers fails.
    await waitForPong(this.port, 120_000);
  }

  /** Kills the server hard (SIGKILL: no clean shutdown) and starts it again on the same port and files. */
  async restart(downMs = 500): Promise<void> {
    await this.#kill();
    await sleep(downMs);
    await this.#spawn();
  }

  async #kill(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.#kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
