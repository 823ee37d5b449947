// dynalite in a process of its own, so the world's DynamoDB runs on another core than the functions
// and the rest of the world. Plain JavaScript so it starts fast. Prints the port it listens on, then
// serves until its parent goes away (stdin closes).
// Usage: node dynalite-server.mjs <table creation ms>
import { createRequire } from 'node:module';

const dynalite = createRequire(import.meta.url)('dynalite');
const server = dynalite({ createTableMs: Number(process.argv[2]), deleteTableMs: 0, updateTableMs: 0 });
server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
