/** What `busbar serve` prints at start: where it listens and a curl line to try. */
export function banner(url: string, transport: string, tokens: boolean): string {
  const auth = tokens ? ` -H 'Authorization: Bearer <token>'` : '';
  return [
    `busbar gateway listening on ${url} (broker: ${transport})`,
    'try:',
    `  curl${auth} -X POST ${url}/v1/types/demo/messages -H 'Content-Type: text/plain' -d 'hello'`,
    `  curl${auth} '${url}/v1/types/demo/messages?group=g1&wait=1000'`,
    `reference: ${url}/openapi.json and docs/rest.md`,
  ].join('\n');
}
