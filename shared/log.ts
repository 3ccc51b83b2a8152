// Structured logs: pino JSON lines on stdout. One logger per process, children per component.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, debug = false): Logger {
  return pino({ name, level: debug ? 'debug' : (process.env.LAINLET_LOG_LEVEL ?? 'info'), base: { pid: process.pid } });
}

/** A logger that drops everything, for library use in unit tests. */
export const silentLogger: Logger = pino({ level: 'silent' });
