/**
 * The package as a user gets it: `npm pack` the project, install the tarball into an empty project, and run the
 * README's library example and the installed `busbar` there, with this Node.js and with the lowest one `engines`
 * claims (fetched from the npm registry as the `node` package). A Node.js 20, where the machine has one, shows what
 * happens below the range: the library loads, memory: works, and the embedded broker fails with one clear error.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  engines: { node: string };
};
/** The lower bound of the first range `engines` names, e.g. 22.20.0 of "^22.20.0 || >=24.7.0" (22.13.0 of ">=22.13"). */
const [, major, minor, patch = '0'] = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(manifest.engines.node) ?? [];
const LOWEST = `${major}.${minor}.${patch}`;
const NODE_CACHE = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'busbar', 'node');
const MACHINE_NODE = '/usr/bin/node';

const work = mkdtempSync(join(tmpdir(), 'busbar-pack-'));
const app = join(work, 'app');
after(() => rmSync(work, { recursive: true, force: true }));

// npm test's own npm_* settings (its prefix, its lifecycle event) must not leak into the npm runs below.
const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'INIT_CWD'),
);
cleanEnv.BUSBAR_BROKER = '';
cleanEnv.BUSBAR_CONFIG = '';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], options: { cwd: string; node?: string }): Promise<Run> {
  // The node that `#!/usr/bin/env node` and npm's scripts find is the one asked for.
  const env = { ...cleanEnv };
  if (options.node) env.PATH = `${dirname(options.node)}${delimiter}${env.PATH}`;
  return new Promise((resolve) => {
    execFile(file, args, { cwd: options.cwd, env, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
    });
  });
}

async function ok(file: string, args: string[], options: { cwd: string; node?: string }): Promise<string> {
  const result = await run(file, args, options);
  assert.equal(result.code, 0, `${file} ${args.join(' ')} failed:\n${result.stderr}${result.stdout}`);
  return result.stdout;
}

/** The `node` binary of version `version`, installed once from the npm registry into the user's cache. */
async function nodeBinary(version: string): Promise<string> {
  const binary = join(NODE_CACHE, version, 'node_modules', 'node', 'bin', 'node');
  if (existsSync(binary)) return binary;
  mkdirSync(NODE_CACHE, { recursive: true });
  // Installed beside, then renamed into place, so an interrupted download never looks like a cached one.
  const staging = mkdtempSync(join(NODE_CACHE, `.${version}-`));
  writeFileSync(join(staging, 'package.json'), JSON.stringify({ private: true, allowScripts: { node: true } }));
  try {
    await ok('npm', ['install', '--no-audit', '--no-fund', '--no-save', `node@${version}`], { cwd: staging });
    renameSync(staging, join(NODE_CACHE, version));
  } catch (error) {
    // Another run may have cached the same version meanwhile: then use that one.
    if (!existsSync(binary)) throw error;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return binary;
}

let tarball: { filename: string; files: { path: string }[] };

before(async () => {
  // prepare builds dist/ before packing, as on publish.
  const packed = await ok('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT });
  const [info] = JSON.parse(packed.slice(packed.indexOf('['))) as (typeof tarball)[];
  assert.ok(info, packed);
  tarball = info;
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  await ok('npm', ['install', '--no-audit', '--no-fund', join(work, tarball.filename)], { cwd: app });
  writeFileSync(join(app, 'example.js'), EXAMPLE);
  writeFileSync(join(app, 'example.ts'), EXAMPLE);
});

/** The README's library example, made to terminate: every step runs once, then the bus closes. */
const EXAMPLE = `
import { MessageBus, message } from 'busbar';

const bus = await MessageBus.connect(process.argv[2]);
await bus.send('alerts', { level: 'high' });

const producer = bus.producer({ producerId: 'sspl_sensor', messageType: 'alerts', method: 'sync' });
await producer.send(['message 1', message({ id: 2 }, { key: 'node-7', headers: { traceparent: '00-x' } })]);

const consumer = bus.consumer({
  consumerId: 'sspl_actuator',
  consumerGroup: 'cortx_monitor',
  messageTypes: ['alerts'],
  autoAck: false,
  offset: 'earliest',
});
const bodies = [];
for (let i = 0; i < 3; i++) bodies.push((await consumer.receive())?.body);
await consumer.ack();

const admin = bus.admin();
await admin.registerMessageType('alerts', { partitions: 4 });
const [stats] = await admin.stats('alerts');
await bus.close();
console.log(JSON.stringify({ bodies, depth: stats?.depth, unread: stats?.groups[0]?.unread }));
`;

test('the tarball holds the built library and the bin, not the sources', () => {
  const files = tarball.files.map((f) => f.path);
  const console = ['dist/server/console/index.html', 'dist/server/console/app.js', 'dist/server/console/app.css'];
  for (const file of [
    'package.json',
    'bin/busbar.js',
    'dist/index.js',
    'dist/index.d.ts',
    'dist/cli/main.js',
    ...console,
  ]) {
    assert.ok(files.includes(file), `${file} is missing from the tarball`);
  }
  assert.deepEqual(
    files.filter((f) => f.startsWith('src/') || f.startsWith('test/')),
    [],
  );
});

test('the installed declarations type-check the README example, and the source maps carry their sources', async () => {
  const tsconfig = {
    compilerOptions: {
      module: 'nodenext',
      target: 'es2023',
      strict: true,
      noEmit: true,
      typeRoots: [join(ROOT, 'node_modules', '@types')],
      types: ['node'],
    },
    files: ['example.ts'],
  };
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(tsconfig));
  await ok(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: app });
  const map = JSON.parse(readFileSync(join(app, 'node_modules', 'busbar', 'dist', 'index.js.map'), 'utf8'));
  assert.match(map.sourcesContent?.[0] ?? '', /export \{ MessageBus \}/);
});

test("in the clone, import 'busbar' works: npm install (prepare) built dist/, as npm pack just did", async () => {
  const script =
    "import { MessageBus } from 'busbar'; const bus = await MessageBus.connect('memory:'); await bus.close();";
  await ok(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT });
});

async function exercise(node: string): Promise<void> {
  const db = join(work, `example-${Math.random().toString(36).slice(2)}.db`);
  const output = await ok(node, ['example.js', `embedded:${db}`], { cwd: app });
  assert.deepEqual(JSON.parse(output), {
    bodies: [{ level: 'high' }, 'message 1', { id: 2 }],
    depth: 3,
    unread: 0,
  });

  const busbar = join(app, 'node_modules', '.bin', 'busbar');
  assert.equal(await ok(busbar, ['--version'], { cwd: app, node }), `${manifest.version}\n`);
  const broker = `embedded:${join(work, `cli-${Math.random().toString(36).slice(2)}.db`)}`;
  await ok(busbar, ['send', 'orders', 'first', 'second', '--broker', broker], { cwd: app, node });
  const received = await ok(busbar, ['receive', 'orders', '--group', 'billing', '--count', '2', '--broker', broker], {
    cwd: app,
    node,
  });
  assert.equal(received, 'first\nsecond\n');
}

test(`the README example and the installed busbar work on this Node.js (${process.version})`, async () => {
  await exercise(process.execPath);
});

test(`... and on the lowest Node.js that engines claims (${LOWEST}, from the npm registry)`, async () => {
  const node = await nodeBinary(LOWEST);
  assert.equal(await ok(node, ['--version'], { cwd: app }), `v${LOWEST}\n`);
  await exercise(node);
});

const machineMajor = existsSync(MACHINE_NODE)
  ? Number((await run(MACHINE_NODE, ['--version'], { cwd: work })).stdout.slice(1).split('.')[0])
  : 0;

test('below the range (Node.js 20): the library loads, memory: works, embedded: fails with one error saying what to do', {
  skip: machineMajor === 20 ? false : `needs Node.js 20 at ${MACHINE_NODE}`,
}, async () => {
  const script = `
      import { MessageBus } from 'busbar';
      const memory = await MessageBus.connect('memory:');
      await memory.send('t', 'hello');
      const got = await memory.consumer({ consumerGroup: 'g', messageTypes: ['t'] }).receive();
      await memory.close();
      try {
        await MessageBus.connect(process.argv[2]);
        console.log(JSON.stringify({ memory: got.body }));
      } catch (error) {
        console.log(JSON.stringify({ memory: got.body, code: error.code, message: error.message }));
      }`;
  writeFileSync(join(app, 'old-node.js'), script);
  const output = await ok(MACHINE_NODE, ['old-node.js', `embedded:${join(work, 'old.db')}`], { cwd: app });
  const result = JSON.parse(output);
  assert.equal(result.memory, 'hello');
  assert.equal(result.code, 'BUSBAR_ERR_UNSUPPORTED');
  assert.match(
    result.message,
    /needs Node\.js 22\.20\+ or 24\.7\+ .*this is Node\.js v20\..*memory: or a network broker/,
  );

  const busbar = join(app, 'node_modules', '.bin', 'busbar');
  const cli = await run(busbar, ['--version'], { cwd: app, node: MACHINE_NODE });
  assert.equal(cli.code, 2);
  assert.match(cli.stderr, /^busbar: this is Node\.js v20\.[\d.]+; busbar needs Node\.js 22\.20\+ or 24\.7\+\..*\n$/);
});
