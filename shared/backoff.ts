// Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff and
// Jitter"): the delay is uniform in [0, min(cap, base * 2^attempt)], so a thousand agents
// that lost the same hub do not come back at the same instant.
export class Backoff {
  private attempt = 0;

  constructor(private readonly baseMs: number, private readonly capMs: number, private readonly random: () => number = Math.random) {}

  next(): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
    if (ceiling < this.capMs) this.attempt++;
    return this.random() * ceiling;
  }

  reset(): void { this.attempt = 0; }
}
