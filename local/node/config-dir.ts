// The part of a Nomad agent's `-config` directory the stand-in reads at each start: `encrypt` in a
// `server` block. Nomad loads the directory's *.hcl and *.json files in lexical order and merges
// them, a later file's value winning (command/agent/config_parse.go, LoadConfigDir). A JSON file
// that does not parse stops the agent, as in Nomad; HCL is only searched for the one attribute.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const HCL_SERVER_ENCRYPT = /server\s*\{[^}]*?\bencrypt\s*=\s*"([^"]*)"/s;

/** The `encrypt` the directory's files set, the last one winning; undefined when none does. */
export function encryptFromConfigDir(directory: string): string | undefined {
  if (!existsSync(directory)) return undefined;
  let encrypt: string | undefined;
  const files = readdirSync(directory)
    .filter((name) => name.endsWith('.hcl') || name.endsWith('.json'))
    .sort();
  for (const name of files) {
    const text = readFileSync(join(directory, name), 'utf8');
    const found = name.endsWith('.json') ? encryptOfJson(name, text) : HCL_SERVER_ENCRYPT.exec(text)?.[1];
    if (found !== undefined) encrypt = found;
  }
  return encrypt;
}

function encryptOfJson(name: string, text: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`Error loading configuration from ${name}: ${(error as Error).message}`);
  }
  const server = (parsed as { server?: { encrypt?: unknown } } | null)?.server;
  return typeof server?.encrypt === 'string' ? server.encrypt : undefined;
}
