// A token bucket for log lines that a crowd can cause (one per connection, per refusal): a
// storm of 16 000 connections must not write 16 000 lines. Lines over the rate are counted,
// and the next line that passes says how many were left out, so nothing is silent.
export class LogLimiter {
  private tokens: number;
  private last: number;
  private suppressed = 0;

  /**
   * @param burst lines allowed at once
   * @param perSecond lines allowed per second on average after the burst
   */
  constructor(private readonly burst: number, private readonly perSecond: number, private readonly now: () => number = Date.now) {
    this.tokens = burst;
    this.last = now();
  }

  /**
   * Whether a line may be written now. When it may, returns the number of lines left out
   * since the last one written (0 usually), for the line to carry; returns -1 when it may not.
   */
  take(): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.perSecond);
    this.last = t;
    if (this.tokens < 1) {
      this.suppressed++;
      return -1;
    }
    this.tokens--;
    const left = this.suppressed;
    this.suppressed = 0;
    return left;
  }
}
