import { runConformance } from './suite.ts';

runConformance({ name: 'memory', connect: () => 'memory:', ackTimeoutMs: 500 });
