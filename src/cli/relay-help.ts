/** Kept apart from relay.ts so `busbar --help` does not load the outbox code. */
export const RELAY_HELP = `Usage: busbar relay --outbox URL [--table T] [--schema S] [--batch N] [--poll-ms MS] [--lease-ms MS] [--install]

Sends what the application wrote into its transactional outbox to the broker (--broker), in order per key, with
each message's id unchanged, and deletes it from the outbox once the broker confirmed it. Runs until SIGINT /
SIGTERM; several relays may run on one outbox at once. A relay killed mid-batch leaves that batch in the outbox, so
the next relay sends it again with the same ids (consumers deduplicate by id).

  --outbox URL     postgres://user@host:5432/db (woken by LISTEN/NOTIFY), or sqlite:/path/to/app.db
  --table T        the outbox table (default busbar_outbox)
  --schema S       PostgreSQL schema (default public)
  --batch N        most messages per database transaction (default 2000), sent in broker calls of 500
  --poll-ms MS     look for messages this often without a wake-up (default 1000)
  --lease-ms MS    SQLite: how long a relay's turn lasts unrenewed; another relay takes over after it (default 30000)
  --install        create the outbox table first when it is missing`;
