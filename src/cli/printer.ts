/**
 * `busbar receive`'s output: lines written in chunks, each message acked once the chunk holding its line was written.
 * A message is never acked before it was printed, and printing does not wait for one write and one ack per message.
 */
import { once } from 'node:events';
import type { Message } from '../bus/message.ts';

/** A chunk goes out at the end of each event-loop turn, or sooner once it holds this many bytes. */
const CHUNK_BYTES = 64 * 1024;
const NEWLINE = Buffer.from('\n');

export class Printer {
  readonly #out: NodeJS.WritableStream;
  readonly #pending = new Set<Promise<void>>();
  readonly #onError = (error: unknown) => this.#fail(error);
  readonly #stopped = new AbortController();
  #parts: Uint8Array[] = [];
  #bytes = 0;
  #messages: Message[] = [];
  #scheduled = false;
  #blocked: Promise<void> | undefined;
  #failure: unknown;
  #readerGone = false;

  constructor(out: NodeJS.WritableStream) {
    this.#out = out;
    // Without a listener a failed write (the reader closed the pipe) would be an uncaught exception.
    out.on('error', this.#onError);
  }

  /** Aborts once the reader closed the pipe (EPIPE) or a write or ack failed: nothing more should be taken. */
  get stopped(): AbortSignal {
    return this.#stopped.signal;
  }

  /**
   * Queues one line (the newline is added); `ack` is acked once the line is written. Returns false when the output's
   * buffer is full: wait for drained() before printing more.
   */
  print(line: Uint8Array | string, ack?: Message): boolean {
    const bytes = typeof line === 'string' ? Buffer.from(line) : line;
    this.#parts.push(bytes, NEWLINE);
    this.#bytes += bytes.byteLength + 1;
    if (ack) this.#messages.push(ack);
    if (this.#bytes >= CHUNK_BYTES) this.#flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#flush();
      });
    }
    return this.#blocked === undefined;
  }

  /** Resolves once the output takes more. */
  async drained(): Promise<void> {
    await this.#blocked;
  }

  /** Writes what is queued, waits for every write and ack, and throws the first failure. */
  async close(): Promise<void> {
    this.#flush();
    while (this.#pending.size > 0) await Promise.all(this.#pending);
    this.#out.off('error', this.#onError);
    if (this.#failure) throw this.#failure;
  }

  #flush(): void {
    if (this.#parts.length === 0 || this.#readerGone) return;
    const chunk = Buffer.concat(this.#parts, this.#bytes);
    const messages = this.#messages;
    this.#parts = [];
    this.#bytes = 0;
    this.#messages = [];
    const written = new Promise<void>((resolve) => {
      const more = this.#out.write(chunk, (error) => {
        if (error) this.#fail(error);
        else if (messages.length > 0) this.#track(Promise.all(messages.map((m) => m.ack())).then(() => {}));
        resolve();
      });
      if (!more && !this.#blocked) {
        // once() also settles (rejecting) on 'error', e.g. when the reader closed the pipe.
        this.#blocked = once(this.#out, 'drain').then(
          () => (this.#blocked = undefined),
          () => (this.#blocked = undefined),
        );
      }
    });
    this.#track(written);
  }

  #track(work: Promise<void>): void {
    const tracked: Promise<void> = work.then(
      () => {
        this.#pending.delete(tracked);
      },
      (error: unknown) => {
        this.#pending.delete(tracked);
        this.#fail(error);
      },
    );
    this.#pending.add(tracked);
  }

  #fail(error: unknown): void {
    // The reader leaving is how `busbar receive ... | head` ends: the unprinted messages were never acked.
    if ((error as NodeJS.ErrnoException)?.code === 'EPIPE') this.#readerGone = true;
    else this.#failure ??= error;
    this.#stopped.abort();
  }
}
