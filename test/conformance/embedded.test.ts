import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformance } from './suite.ts';

// No restart hook: there is no broker process to restart; reopening the file is covered in
// test/transports/embedded.test.ts (persistence) and embedded-processes.test.ts (a SIGKILLed consumer).
let dir = '';
runConformance({
  name: 'embedded',
  before: async () => {
    dir = mkdtempSync(join(tmpdir(), 'busbar-conformance-embedded-'));
  },
  after: async () => rmSync(dir, { recursive: true, force: true }),
  connect: () => `embedded:${join(dir, 'bus.db')}`,
  ackTimeoutMs: 500,
});
