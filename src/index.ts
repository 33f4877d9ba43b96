export {
  Bridge,
  type BridgeEvents,
  type BridgeOptions,
  type BridgeStats,
  bridge,
  DEFAULT_BRIDGE_GROUP,
  type LaneStats,
} from './bridge/index.ts';
export { Admin, type ExpiryOptions, MAX_PEEK, type PeekRequest, type Registration } from './bus/admin.ts';
export { MessageBus } from './bus/bus.ts';
export { Consumer, type ConsumerOptions, type ReceiveOptions } from './bus/consumer.ts';
export type {
  DeadLetter,
  DeadLetterReadOptions,
  RedriveOptions,
  RedriveResult,
} from './bus/dead-letters.ts';
export { type HandleOptions, Handler } from './bus/handler.ts';
export { Message } from './bus/message.ts';
export { BusMetrics, PROMETHEUS_CONTENT_TYPE } from './bus/metrics.ts';
export { compose, deduplicate, type HandlerFn, type Middleware, timeout } from './bus/middleware.ts';
export * from './bus/options.ts';
export {
  formatTraceparent,
  type OtelApi,
  type OtelTracer,
  parseTraceparent,
  traceWithOpenTelemetry,
} from './bus/otel.ts';
export { message, Outgoing, Producer, type ProducerOptions, type ProducerStats } from './bus/producer.ts';
export type { InferOutput, StandardSchemaV1, StandardSchemaV1Issue, StandardSchemaV1Result } from './bus/schema.ts';
export {
  ackChannel,
  deliverChannel,
  type MessageContext,
  nackChannel,
  type PublishContext,
  publishChannel,
} from './bus/tracing.ts';
export { type BusOptions, type ResolvedConfig, resolveConfig } from './config/index.ts';
export { BusError, ERROR_CODES, type ErrorCode, isBusError } from './errors.ts';
export { BYTES_TYPE, JSON_TYPE, TEXT_TYPE } from './message/codec.ts';
export { DEAD_LETTER_HEADERS, type OutgoingOptions } from './message/envelope.ts';
export {
  type Inbox,
  type InboxOptions,
  type InboxStats,
  type PgClientLike,
  type PgPoolLike,
  pgInbox,
  sqliteInbox,
} from './reliability/inbox.ts';
export {
  PgOutbox,
  type PgOutboxOptions,
  type PostgresJsSql,
  type Queryable,
  Relay,
  type RelayEvents,
  type RelayOptions,
  SqliteOutbox,
  type SqliteOutboxOptions,
} from './reliability/outbox/index.ts';
export { defaultSpoolPath, type SpoolOptions, type SpoolStats } from './reliability/spool.ts';
export type * from './transport/contract.ts';
