import { readFileSync } from 'node:fs';

/** busbar's version, from the package.json two folders up: the same from src/cli/ in a clone and dist/cli/ installed. */
export function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return manifest.version;
}
