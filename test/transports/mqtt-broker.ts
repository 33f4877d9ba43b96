/**
 * A private Mosquitto for tests that restart their broker: its own config (persistence on, a temp dir, a free
 * port, no per-session queue limit), started as a child process so a restart never touches the machine's broker.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tcpReachable } from '../helpers/brokers.ts';
import { freePort } from '../helpers/ports.ts';

const MOSQUITTO = process.env.BUSBAR_TEST_MOSQUITTO ?? 'mosquitto';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr || result.error?.message}`);
}

/** A CA, a server certificate for 127.0.0.1 signed by it, and a password file; returns the listener's settings. */
function secureFiles(dir: string): string[] {
  const file = (name: string) => join(dir, name);
  run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=busbar test CA',
    '-keyout',
    file('ca-key.pem'),
    '-out',
    file('ca.pem'),
  ]);
  run('openssl', [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    file('server-key.pem'),
    '-out',
    file('server.csr'),
  ]);
  writeFileSync(file('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  run('openssl', [
    'x509',
    '-req',
    '-in',
    file('server.csr'),
    '-CA',
    file('ca.pem'),
    '-CAkey',
    file('ca-key.pem'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    file('san.ext'),
    '-out',
    file('server.pem'),
  ]);
  run('mosquitto_passwd', ['-b', '-c', file('passwd'), 'busbar', 's3cret']);
  return [
    `cafile ${file('ca.pem')}`,
    `certfile ${file('server.pem')}`,
    `keyfile ${file('server-key.pem')}`,
    'allow_anonymous false',
    `password_file ${file('passwd')}`,
  ];
}

export class PrivateMosquitto {
  readonly dir: string;
  readonly port: number;
  #process: ChildProcess | undefined;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** Throws when no mosquitto binary can run here (the caller then skips with the reason). */
  static check(): void {
    const result = spawnSync(MOSQUITTO, ['-h'], { encoding: 'utf8' });
    if (result.error) throw new Error(`cannot run ${MOSQUITTO}: ${result.error.message}`);
  }

  /**
   * `secure`: a TLS listener with a CA and server certificate made here (`ca.pem`), and a password file with one
   * user `busbar` / `s3cret` instead of anonymous access.
   */
  static async start(options: { secure?: boolean } = {}): Promise<PrivateMosquitto> {
    const dir = mkdtempSync(join(tmpdir(), 'busbar-mosquitto-'));
    const broker = new PrivateMosquitto(dir, await freePort());
    const secure = options.secure ? secureFiles(dir) : [];
    writeFileSync(
      join(dir, 'mosquitto.conf'),
      [
        `listener ${broker.port} 127.0.0.1`,
        ...(secure.length ? secure : ['allow_anonymous true']),
        'persistence true',
        `persistence_location ${dir}/`,
        'autosave_interval 1',
        // Mosquitto's default (1000 per session) drops messages beyond it; busbar's docs ask for no limit.
        'max_queued_messages 0',
        // Without it Mosquitto's small PUBACKs wait on Nagle's algorithm and the client's delayed ACKs (~40 ms stalls).
        'set_tcp_nodelay true',
        ...(process.getuid?.() === 0 ? ['user root'] : []),
        'log_dest none',
        '',
      ].join('\n'),
    );
    await broker.#launch();
    return broker;
  }

  async #launch(): Promise<void> {
    this.#process = spawn(MOSQUITTO, ['-c', join(this.dir, 'mosquitto.conf')], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await tcpReachable('127.0.0.1', this.port, 500);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(50);
      }
    }
  }

  async #terminate(): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }

  /** A clean stop (Mosquitto writes its persistence file) and a start on the same port and data. */
  async restart(): Promise<void> {
    await this.#terminate();
    await this.#launch();
  }

  /** Stops the broker, keeping its data, until startAgain(). */
  async stopOnly(): Promise<void> {
    await this.#terminate();
  }

  async startAgain(): Promise<void> {
    await this.#launch();
  }

  async stop(): Promise<void> {
    await this.#terminate();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
