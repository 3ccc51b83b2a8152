// The uWebSockets.js ceiling: the same recorded answers from memory, served by uWebSockets.js
// (the engine the hub uses; DESIGN.md explains why the agent does not).
//   node ceiling-uws.js <port> <responses.json>
import { readFileSync } from 'node:fs';
import uWS from 'uWebSockets.js';

interface Recorded { url: string; contentType: string; body: string }

const [portArg, file] = process.argv.slice(2);
const routes = new Map<string, { type: string; body: Buffer }>();
for (const r of JSON.parse(readFileSync(file, 'utf8')) as Recorded[]) routes.set(r.url, { type: r.contentType, body: Buffer.from(r.body, 'base64') });
uWS.App()
  .get('/*', (res, req) => {
    const q = req.getQuery();
    const r = routes.get(req.getUrl() + (q ? `?${q}` : ''));
    if (!r) { res.writeStatus('404 Not Found').end(); return; }
    res.cork(() => { res.writeStatus('200 OK').writeHeader('Content-Type', r.type).end(r.body); });
  })
  .listen('127.0.0.1', Number(portArg), (sock) => {
    if (!sock) { process.stderr.write('cannot listen\n'); process.exit(1); }
    process.stdout.write('listening\n');
  });
