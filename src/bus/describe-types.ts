import type { TransportAdmin, TypeInfo } from '../transport/contract.ts';

/**
 * The TypeInfo of those of `names` that exist: asked of the broker for these types only where the transport can
 * (admin.describeTypes), else picked from the full listing.
 */
export async function describeTypes(admin: TransportAdmin, names: readonly string[]): Promise<TypeInfo[]> {
  if (admin.describeTypes) return admin.describeTypes(names);
  return (await admin.listTypes()).filter((t) => names.includes(t.type));
}
