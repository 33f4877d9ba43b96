/**
 * The conformance suite (DESIGN §10): every transport runs these scenarios through the bus layer, gated by the
 * capabilities it declares. A scenario a capability rules out is skipped with the reason, never deleted or weakened.
 * A transport plugs in with one small file: test/conformance/<name>.test.ts calling runConformance().
 * The suite leaves nothing behind on the broker: it records every type it names (and that type's dead-letter type),
 * and after the scenarios deregisters those the transport lists through the bus's admin API, i.e. the transport's
 * deleteType, which also removes what the transport derives from a type (retry topics, streams, queues, helper keys).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { resolveConfig } from '../../src/config/index.ts';
import { type BusOptions, type Capabilities, deadLetterTypeOf, MessageBus } from '../../src/index.ts';
import type { Transport } from '../../src/transport/contract.ts';
import { loadCapabilities, loadTransport } from '../../src/transport/registry.ts';
import { brokerSkipReason } from '../helpers/brokers.ts';
import { adminScenarios, peekScenarios } from './admin.ts';
import type { SuiteContext } from './context.ts';
import { deliveryScenarios } from './delivery.ts';
import { dlqScenarios } from './dlq.ts';
import { ruleScenarios } from './rules.ts';

export interface ConformanceSpec {
  /** Transport name, as in BUSBAR_REQUIRE_BROKERS and the registry. */
  name: string;
  /** Tells apart two runs of one transport in the report (e.g. `persistent, restarted`). */
  variant?: string;
  /** Options (or URL) for MessageBus.connect; called once per bus. */
  connect: () => string | BusOptions | Promise<string | BusOptions>;
  /** Throws when the broker is unreachable (the suite is then skipped, or fails when required). */
  check?: () => Promise<void>;
  /** Restarts the broker (stop, start, wait until it answers). Enables scenario 13. */
  restart?: () => Promise<void>;
  /** Ack timeout used by the redelivery scenarios (ms). Default 1000. */
  ackTimeoutMs?: number;
  /** How long to wait for messages that should arrive (ms). Default 15000. */
  patienceMs?: number;
  /** Runs once before / after the suite (e.g. start a private broker); `after` runs once the suite's types are deleted. */
  before?: () => Promise<void>;
  after?: () => Promise<void>;
  /**
   * Removes what the run left on the broker besides its types (which the suite deletes through the admin API), given
   * every type and consumer group it named: e.g. group state no admin call deletes. Runs after the types are deleted.
   */
  cleanup?: (created: { types: readonly string[]; groups: readonly string[] }) => Promise<void>;
}

export { collect, uniqueGroup, uniqueType } from './context.ts';

import { uniqueGroup, uniqueType } from './context.ts';

export function runConformance(spec: ConformanceSpec): void {
  const ackTimeoutMs = spec.ackTimeoutMs ?? 1000;
  const patience = spec.patienceMs ?? 15_000;
  let skip: string | undefined;
  let caps: Capabilities;
  const buses: MessageBus[] = [];
  const transports: Transport[] = [];
  /** Every type this run named, with its dead-letter type: what the suite deletes when it ends. */
  const created = new Set<string>();
  /** Every consumer group this run named, for spec.cleanup. */
  const groups = new Set<string>();

  /** A new type name for a scenario, recorded for deletion. */
  function newType(prefix?: string): string {
    const type = uniqueType(prefix);
    created.add(type);
    created.add(deadLetterTypeOf(type));
    return type;
  }

  function newGroup(): string {
    const group = uniqueGroup();
    groups.add(group);
    return group;
  }

  async function connectBus(): Promise<MessageBus> {
    const options = await spec.connect();
    const base: BusOptions = typeof options === 'string' ? { broker: options } : options;
    return MessageBus.connect({ ackTimeoutMs, ...base });
  }

  async function open(): Promise<MessageBus> {
    const bus = await connectBus();
    buses.push(bus);
    return bus;
  }

  /** The transport alone, as the bus would make it, for the scenarios about the contract itself. */
  async function openTransport(): Promise<Transport> {
    const options = await spec.connect();
    const config = resolveConfig(typeof options === 'string' ? { broker: options } : options);
    const transport = await (await loadTransport(config.scheme))(config.transport);
    transports.push(transport);
    return transport;
  }

  /**
   * Deregisters every recorded type the transport lists (deleting an unknown type is a no-op, but a slow one on some
   * brokers), on a fresh bus once the scenarios' buses closed; then checks that none is listed any more.
   */
  async function deleteCreatedTypes(): Promise<void> {
    if (created.size === 0) return;
    const bus = await connectBus();
    try {
      const admin = bus.admin();
      const remaining = async () => (await admin.listMessageTypes()).map((t) => t.type).filter((t) => created.has(t));
      const failures: unknown[] = [];
      for (const type of await remaining()) {
        await admin.deregisterMessageType(type).catch((error: unknown) => failures.push(error));
      }
      if (failures.length > 0) {
        throw new AggregateError(failures, `could not delete ${failures.length} of the types this run created`);
      }
      // deregisterMessageType resolves once the type is gone (the Kafka transport waits out its metadata lag).
      assert.deepEqual(await remaining(), [], 'types this run created are still listed after deleting them');
    } finally {
      await bus.close();
    }
  }

  describe(`conformance: ${spec.name}${spec.variant ? ` (${spec.variant})` : ''}`, { concurrency: 1 }, () => {
    let bus: MessageBus;

    before(async () => {
      if (spec.check) skip = await brokerSkipReason(spec.name, spec.check);
      if (skip) return;
      await spec.before?.();
      bus = await open();
      caps = bus.capabilities;
    });

    after(async () => {
      await Promise.allSettled([...buses, ...transports].map((b) => b.close()));
      if (skip) return;
      try {
        try {
          await deleteCreatedTypes();
        } finally {
          await spec.cleanup?.({ types: [...created], groups: [...groups] });
        }
      } finally {
        await spec.after?.();
      }
    });

    /** Declares a scenario; `needs` returns the reason to skip given the capabilities, if any. */
    function scenario(
      title: string,
      run: () => Promise<void>,
      needs?: () => string | undefined,
      timeout = 120_000,
    ): void {
      it(title, { timeout }, async (t) => {
        if (skip) return t.skip(skip);
        const reason = needs?.();
        if (reason) return t.skip(reason);
        await run();
      });
    }

    scenario('0 capabilities: every flag has a known value, as the transport module exports them', async () => {
      // The scenarios below skip by these flags, so a misspelt value would silently run or skip the wrong ones.
      const support = ['native', 'emulated', 'none'];
      assert.ok(['none', 'per-key', 'total'].includes(caps.ordering), `ordering ${caps.ordering}`);
      assert.ok(support.includes(caps.nackDelay), `nackDelay ${caps.nackDelay}`);
      assert.ok(support.includes(caps.ackTimeout), `ackTimeout ${caps.ackTimeout}`);
      for (const flag of ['replay', 'partitions', 'purge', 'lag', 'persistence'] as const) {
        assert.equal(typeof caps[flag], 'boolean', `${flag} is not a boolean`);
      }
      assert.equal(typeof caps.createGroup, 'boolean', 'createGroup');
      const own = await openTransport();
      assert.equal(
        typeof own.admin.ensureGroup === 'function',
        caps.createGroup,
        'admin.ensureGroup exactly where createGroup',
      );
      assert.equal(typeof caps.retention.age, 'boolean');
      assert.equal(typeof caps.retention.bytes, 'boolean');
      assert.deepEqual(caps, await loadCapabilities(spec.name), 'the connected transport declares other capabilities');
    });

    const ctx: SuiteContext = {
      bus: () => bus,
      caps: () => caps,
      spec,
      openBus: open,
      openTransport,
      newType,
      newGroup,
      ackTimeoutMs,
      patience,
      scenario,
    };
    deliveryScenarios(ctx);
    adminScenarios(ctx);
    ruleScenarios(ctx);
    dlqScenarios(ctx);
    peekScenarios(ctx);
  });
}
