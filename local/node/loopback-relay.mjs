// Runs inside a script's private network namespace, where only its own loopback exists: listens on
// 127.0.0.1:<port> for each mapping and carries every connection to a Unix socket on the shared
// filesystem, where the world forwards it to the real endpoint. Plain JavaScript so it starts fast.
// Usage: node loopback-relay.mjs <ready-file> <port>=<socket path> ...
import { writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

const [readyFile, ...mappings] = process.argv.slice(2);
let listening = 0;
for (const mapping of mappings) {
  const separator = mapping.indexOf('=');
  const port = Number(mapping.slice(0, separator));
  const socketPath = mapping.slice(separator + 1);
  const server = createServer((inbound) => {
    const outbound = connect(socketPath);
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  server.listen(port, '127.0.0.1', () => {
    listening += 1;
    if (listening === mappings.length) writeFileSync(readyFile, '');
  });
}
