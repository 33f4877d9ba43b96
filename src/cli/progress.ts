/** A one-line progress bar on stderr, redrawn at most every 100 ms; silent unless stderr is a terminal. */
export class Progress {
  readonly #label: string;
  readonly #enabled: boolean;
  #last = 0;
  #shown = false;

  constructor(label: string, enabled = process.stderr.isTTY === true) {
    this.#label = label;
    this.#enabled = enabled;
  }

  update(done: number, total?: number): void {
    const width = 30;
    const bar =
      total && total > 0
        ? `[${'#'.repeat(Math.round((done / total) * width)).padEnd(width, '.')}] ${done}/${total}`
        : `${done} sent`;
    this.show(bar);
  }

  /** Redraws the line as `<label> <text>` (padded over a longer previous one). */
  show(text: string): void {
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#last < 100) return;
    this.#last = now;
    this.#shown = true;
    process.stderr.write(`\r${`${this.#label} ${text}`.padEnd(70)}`);
  }

  /** Clears the line, so a message can be printed; the next show() draws it again. */
  clear(): void {
    if (this.#enabled && this.#shown) process.stderr.write(`\r${' '.repeat(70)}\r`);
    this.#shown = false;
    this.#last = 0;
  }

  done(summary: string): void {
    if (!this.#enabled) return;
    if (this.#shown) process.stderr.write(`\r${' '.repeat(70)}\r`);
    process.stderr.write(`${summary}\n`);
  }
}
