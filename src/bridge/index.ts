export { Bridge, type BridgeEvents, type BridgeStats, bridge } from './bridge.ts';
export type { LaneState, LaneStats } from './lane.ts';
export * from './options.ts';
export { parsePattern, type TypePattern, targetTypeOf } from './patterns.ts';
