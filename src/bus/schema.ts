/**
 * Body validation with any Standard Schema v1 validator (https://standardschema.dev): Zod, Valibot, ArkType and
 * others expose `~standard`, so busbar accepts them without depending on any. The interface below is the spec's,
 * written out as its authors ask libraries to (no package to install).
 */
import { BusError } from '../errors.ts';

/** A Standard Schema v1 validator whose input is `Input` and whose validated output is `Output`. */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': StandardSchemaV1Props<Input, Output>;
}

export interface StandardSchemaV1Props<Input = unknown, Output = Input> {
  readonly version: 1;
  readonly vendor: string;
  readonly validate: (value: unknown) => StandardSchemaV1Result<Output> | Promise<StandardSchemaV1Result<Output>>;
  readonly types?: { readonly input: Input; readonly output: Output } | undefined;
}

export type StandardSchemaV1Result<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: readonly StandardSchemaV1Issue[] };

export interface StandardSchemaV1Issue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** The validated output type of a schema. */
export type InferOutput<S> = S extends StandardSchemaV1<unknown, infer O> ? O : unknown;

/** Throws BUSBAR_ERR_INVALID_ARGUMENT unless `schema` is a Standard Schema v1 validator. */
export function checkSchema(schema: unknown, where: string): StandardSchemaV1 | undefined {
  if (schema === undefined) return undefined;
  const props = (schema as Partial<StandardSchemaV1> | null)?.['~standard'];
  if (props?.version !== 1 || typeof props.validate !== 'function') {
    throw new BusError(
      'BUSBAR_ERR_INVALID_ARGUMENT',
      `${where}: schema must be a Standard Schema v1 validator (Zod 3.24+, Valibot 1, ArkType 2, ...), one with a '~standard' property`,
    );
  }
  return schema as StandardSchemaV1;
}

/** `path.to[0]: message; other: message`, at most five issues, for errors and dead-letter reasons. */
export function describeIssues(issues: readonly StandardSchemaV1Issue[]): string {
  const shown = issues.slice(0, 5).map((issue) => {
    const path = (issue.path ?? [])
      .map((segment) => (typeof segment === 'object' && segment !== null ? segment.key : segment))
      .map((key, i) => (typeof key === 'number' ? `[${key}]` : `${i === 0 ? '' : '.'}${String(key)}`))
      .join('');
    return path ? `${path}: ${issue.message}` : issue.message;
  });
  const more = issues.length > 5 ? `; and ${issues.length - 5} more` : '';
  return `${shown.join('; ')}${more}`;
}

export type Validated<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

/** Runs the schema on a decoded body: its output (which may differ from the input, e.g. coerced) or why it failed. */
export async function validateBody<T>(schema: StandardSchemaV1<unknown, T>, body: unknown): Promise<Validated<T>> {
  let result: StandardSchemaV1Result<T>;
  try {
    result = await schema['~standard'].validate(body);
  } catch (error) {
    return { ok: false, reason: `the schema threw: ${error instanceof Error ? error.message : String(error)}` };
  }
  if (result.issues !== undefined) return { ok: false, reason: describeIssues(result.issues) };
  return { ok: true, value: result.value };
}

/** The error producer.send() and bus.send() throw for a body that fails its schema: nothing is sent. */
export function schemaRejected(type: string, reason: string, index?: number): BusError {
  const which = index === undefined ? 'the body' : `message ${index} of the batch`;
  return new BusError(
    'BUSBAR_ERR_INVALID_ARGUMENT',
    `${which} does not match the schema of '${type}': ${reason}; nothing was sent`,
  );
}
