// A one-line live counter for long bench runs: on a TTY (process.stdout.isTTY) the current
// stage, the runs done and the elapsed time, redrawn in place every 500 ms; anywhere else it
// says nothing (logs and pipes stay clean). clear() wipes the line before other output.
import type { Measurement } from '../scenarios/common.js';

export class Progress {
  readonly enabled: boolean;
  #stage = '';
  #done = 0;
  #failed = 0;
  #last = '';
  #t0 = performance.now();
  #stageT0 = performance.now();
  #timer: NodeJS.Timeout | null = null;

  constructor(enabled: boolean = process.stdout.isTTY === true) {
    this.enabled = enabled;
    if (enabled) {
      this.#timer = setInterval(() => this.#draw(), 500);
      this.#timer.unref();
    }
  }

  stage(text: string): void {
    this.#stage = text;
    this.#stageT0 = performance.now();
    this.#draw();
  }

  done(m: Measurement): void {
    this.#done++;
    if (!m.ok) this.#failed++;
    this.#last = `${m.scenario}${m.variant ? ' ' + m.variant : ''} ${m.target}: ${m.msgsPerSec.toFixed(0)}/s${m.ok ? '' : ' FAILED'}`;
    this.#draw();
  }

  #draw(): void {
    if (!this.enabled) return;
    const el = (ms: number) => `${Math.round(ms / 1000)}s`;
    const line = `[${el(performance.now() - this.#t0)}] ${this.#done} runs${this.#failed ? ` (${this.#failed} failed)` : ''} · ${this.#stage} (${el(performance.now() - this.#stageT0)})${this.#last ? ` · last: ${this.#last}` : ''}`;
    const width = process.stdout.columns || 120;
    process.stdout.write(`\r\x1b[2K${line.slice(0, width - 1)}`);
  }

  clear(): void {
    if (this.enabled) process.stdout.write('\r\x1b[2K');
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.clear();
  }
}
