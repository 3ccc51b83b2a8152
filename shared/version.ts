// The version /version reports and -v prints. The original answered "2.4.3+git"; ours says
// what it is (API.md §11 item 9).
import { readFileSync } from 'node:fs';

function packageVersion(): string {
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch { /* try the next location: dist/shared or shared */ }
  }
  return '0.0.0';
}

export const VERSION = packageVersion();
