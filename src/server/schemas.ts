/**
 * JSON schemas of every request part: Fastify (ajv) validates requests with them, and openapi.ts publishes the very
 * same objects, so the reference cannot drift from what is enforced. Limits come from the server settings.
 */
import type { Limits } from './options.ts';

const NAME_PATTERN = '^[A-Za-z0-9](?!.*\\.\\.)[A-Za-z0-9._-]{0,199}$';
const NO_CONTROL = '^[^\\u0000-\\u001f\\u007f]*$';

export const typeName = {
  type: 'string',
  pattern: NAME_PATTERN,
  description: "1-200 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, no '..'",
} as const;

export const groupName = { ...typeName, description: 'consumer group; same rules as type names' } as const;

const headersSchema = {
  type: 'object',
  description: 'user headers (string values)',
  maxProperties: 64,
  propertyNames: { pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$" },
  additionalProperties: { type: 'string', maxLength: 4096, pattern: NO_CONTROL },
} as const;

const keySchema = {
  type: 'string',
  minLength: 1,
  maxLength: 1024,
  pattern: NO_CONTROL,
  description: 'partition / ordering key',
} as const;

const contentTypeSchema = {
  type: 'string',
  maxLength: 200,
  pattern: '^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\\s*;[^\\u0000-\\u001f\\u007f]*)?$',
  description: 'the message content type (default: application/json for JSON values, text/plain for strings)',
} as const;

export const typeParams = {
  type: 'object',
  required: ['type'],
  properties: { type: typeName },
} as const;

export function buildSchemas(limits: Readonly<Limits>, defaultLeaseMs: number) {
  const publishItem = {
    type: 'object',
    required: ['body'],
    additionalProperties: false,
    properties: {
      body: { description: 'a JSON value; a string is text; base64 bytes with "encoding": "base64"' },
      contentType: contentTypeSchema,
      encoding: { type: 'string', enum: ['base64'], description: 'body is base64 of the bytes to send' },
      key: keySchema,
      headers: headersSchema,
      id: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,200}$', description: 'message id (default: a UUIDv7)' },
    },
  } as const;

  const publishBatch = {
    type: 'object',
    required: ['messages'],
    additionalProperties: false,
    properties: {
      messages: {
        type: 'array',
        minItems: 1,
        description: `at most ${limits.batchMessages} messages (more: 413)`,
        items: publishItem,
      },
    },
  } as const;

  const leaseMs = {
    type: 'integer',
    minimum: 100,
    maximum: limits.maxLeaseMs,
    default: Math.min(defaultLeaseMs, limits.maxLeaseMs),
    description: 'ms a received message stays leased to you; unacked, it then returns to the group',
  } as const;

  const offset = {
    type: 'string',
    enum: ['earliest', 'latest'],
    default: 'earliest',
    description: 'where a group that never read this type starts (ignored for a group that exists)',
  } as const;

  const pullQuery = {
    type: 'object',
    required: ['group'],
    additionalProperties: false,
    properties: {
      group: groupName,
      max: { type: 'integer', minimum: 1, maximum: limits.maxPull, default: 10, description: 'most messages' },
      wait: {
        type: 'integer',
        minimum: 0,
        maximum: limits.maxWaitMs,
        default: 1000,
        description: 'ms to wait for a first message (long poll)',
      },
      lease: leaseMs,
      autoAck: { type: 'boolean', default: false, description: 'ack on delivery (no receipts; at-most-once)' },
      offset,
      format: {
        type: 'string',
        enum: ['busbar', 'cloudevents'],
        default: 'busbar',
        description: 'cloudevents: each message as a structured CloudEvent (docs/rest.md)',
      },
    },
  } as const;

  const streamQuery = {
    type: 'object',
    required: ['group'],
    additionalProperties: false,
    properties: {
      group: groupName,
      lease: leaseMs,
      autoAck: pullQuery.properties.autoAck,
      offset,
      format: pullQuery.properties.format,
      inflight: {
        type: 'integer',
        minimum: 1,
        maximum: limits.streamInflight,
        default: limits.streamInflight,
        description: 'most unacked messages the stream holds before it waits for acks',
      },
    },
  } as const;

  const receipts = {
    type: 'array',
    minItems: 1,
    maxItems: limits.maxPull,
    items: { type: 'string', minLength: 1, maxLength: 2048 },
    description: 'receipts exactly as a pull or stream returned them',
  } as const;

  const ackBody = {
    type: 'object',
    required: ['receipts'],
    additionalProperties: false,
    properties: {
      receipts,
      group: { ...groupName, description: 'when given, every receipt must belong to this group' },
    },
  } as const;

  const nackBody = {
    type: 'object',
    required: ['receipts'],
    additionalProperties: false,
    properties: {
      ...ackBody.properties,
      delayMs: {
        type: 'integer',
        minimum: 0,
        maximum: limits.maxNackDelayMs,
        description: 'redeliver no sooner than this',
      },
    },
  } as const;

  const registerBody = {
    type: 'object',
    additionalProperties: false,
    properties: {
      partitions: { type: 'integer', minimum: 1, maximum: 10_000, description: 'grows, never shrinks' },
      expireTimeMs: { type: 'integer', minimum: 1, description: 'messages older than this are removed' },
      dataLimitBytes: { type: 'integer', minimum: 1, description: 'oldest messages are removed beyond this' },
    },
  } as const;

  const groupBody = {
    type: 'object',
    additionalProperties: false,
    properties: {
      offset: {
        type: 'string',
        enum: ['earliest', 'latest'],
        default: 'latest',
        description:
          'latest: keeps every message sent from now on; earliest: from the oldest message kept (where the ' +
          'transport has replay). Ignored for a group that exists: it keeps its position',
      },
    },
  } as const;

  const cortxPublish = {
    type: 'object',
    required: ['messages'],
    additionalProperties: false,
    properties: {
      messages: {
        type: 'array',
        minItems: 1,
        items: { description: 'a string (text) or any JSON value' },
        description: `at most ${limits.batchMessages} messages`,
      },
    },
  } as const;

  const cortxQuery = {
    type: 'object',
    required: ['consumer_group'],
    additionalProperties: false,
    properties: {
      consumer_group: groupName,
      max: pullQuery.properties.max,
      wait: pullQuery.properties.wait,
      lease: leaseMs,
      auto_ack: {
        type: 'boolean',
        default: true,
        description: 'CORTX clients never ack, so messages are acked on delivery; false returns receipts',
      },
    },
  } as const;

  const errorBody = {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: { code: { type: 'string', pattern: '^BUSBAR_ERR_' }, message: { type: 'string' } },
      },
    },
  } as const;

  const wireMessage = {
    type: 'object',
    required: ['id', 'type', 'source', 'time', 'contentType', 'headers', 'attempt', 'body'],
    properties: {
      id: { type: 'string' },
      type: { type: 'string' },
      source: { type: 'string' },
      time: { type: 'string', format: 'date-time' },
      contentType: { type: 'string' },
      key: { type: 'string' },
      headers: { type: 'object', additionalProperties: { type: 'string' } },
      attempt: { type: 'integer', minimum: 1 },
      body: { description: 'JSON value, text string, or base64 when encoding is "base64"' },
      encoding: { type: 'string', enum: ['base64'] },
      receipt: { type: 'string', description: 'ack or nack with it before leaseExpiresAt' },
      leaseExpiresAt: { type: 'string', format: 'date-time' },
    },
  } as const;

  const typeStats = {
    type: 'object',
    properties: {
      type: { type: 'string' },
      depth: { type: 'integer' },
      bytes: { type: 'integer', description: '-1 where the broker cannot tell' },
      partitions: { type: 'integer' },
      publishedPerSec: { type: 'number', description: 'through this gateway, last minute' },
      groups: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            group: { type: 'string' },
            unread: { type: 'integer' },
            inflight: { type: 'integer', description: '-1 where the broker cannot tell' },
            oldestAgeMs: { type: ['integer', 'null'] },
            dropped: { type: 'integer', description: 'lost to a bounded buffer (zeromq only); absent elsewhere' },
            consumers: { type: 'integer', description: 'consumers attached to the group, where the broker tells' },
            leased: { type: 'integer', description: 'messages leased by this gateway now' },
            deliveredPerSec: { type: 'number' },
            ackedPerSec: { type: 'number' },
            nackedPerSec: { type: 'number' },
            expiredPerSec: { type: 'number' },
          },
        },
      },
    },
  } as const;

  return {
    publishItem,
    publishBatch,
    pullQuery,
    streamQuery,
    ackBody,
    nackBody,
    registerBody,
    groupBody,
    cortxPublish,
    cortxQuery,
    errorBody,
    wireMessage,
    typeStats,
  };
}

export type Schemas = ReturnType<typeof buildSchemas>;
