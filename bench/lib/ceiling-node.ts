// The node:http ceiling: a bare node:http server answering each recorded URL with the agent's
// exact bytes from memory (a Buffer). What the agent's transport could do at best.
//   node ceiling-node.js <port> <responses.json>
import { readFileSync } from 'node:fs';
import http from 'node:http';

interface Recorded { url: string; contentType: string; body: string }

const [portArg, file] = process.argv.slice(2);
const routes = new Map<string, { type: string; body: Buffer }>();
for (const r of JSON.parse(readFileSync(file, 'utf8')) as Recorded[]) routes.set(r.url, { type: r.contentType, body: Buffer.from(r.body, 'base64') });
const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const r = routes.get(req.url ?? '');
  if (!r) { res.writeHead(404).end(); return; }
  res.writeHead(200, { 'Content-Type': r.type, 'Content-Length': r.body.length });
  res.end(r.body);
});
server.listen(Number(portArg), '127.0.0.1', () => process.stdout.write('listening\n'));
