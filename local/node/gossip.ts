// The gossip side of a Nomad server, as the stand-in runs it: the serf agent Nomad embeds (same
// lifetime as the agent, memberlist's WAN timings, keyring persisted in the data dir and seeded from
// `encrypt` only when missing) and the HTTP endpoints Nomad answers from it, /v1/agent/keyring/*
// (ACL agent:write) and /v1/agent/members (command/agent/agent_endpoint.go, serf's keymanager.go).
// Also the servers' ACL tokens and how a request's token is read and judged, which the operator
// endpoints share.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { dirname } from 'node:path';
import { encryptFromConfigDir } from './config-dir';
import { type KeyOperation, type SerfAddress, serfHandshake, serfKeys, serfMembers } from './serf-rpc';

/**
 * One policy rule a token carries, as far as the modelled endpoints ask: `agent-write` stands for
 * `agent { policy = "write" }`, `operator-read` for `operator { policy = "read" }` and so on;
 * `management` is a management token, allowed everything.
 */
export type AclGrant = 'management' | 'agent-write' | 'agent-read' | 'operator-read' | 'operator-write';

/** What an endpoint asks of the request's token (Nomad's aclObj.AllowAgentWrite() and the like). */
export type AclCapability = 'agent:write' | 'operator:read' | 'operator:write';

/** The agent's `acl` block and the tokens its servers know: secret ID → the rules of its policies. */
export interface AclConfig {
  enabled: boolean;
  tokens: Record<string, readonly AclGrant[]>;
}

export interface GossipConfig {
  /** Nomad names a server's serf member `<node name>.<region>`. */
  memberName: string;
  bindPort: number;
  rpcPort: number;
  /**
   * `<data_dir>/server/serf.keyring`: loaded whenever present (it wins over `encrypt`); without it
   * and without `encrypt` the agent gossips in clear.
   */
  keyringFile: string;
  /**
   * The server's `encrypt` (standard base64, as in the agent config). It only seeds a missing
   * keyring file; Nomad warns and ignores it once the file exists. A secret: never log it.
   */
  encrypt?: string;
  /**
   * The agent's `-config` directory: an `encrypt` set by a file there (as the rotator's enable and
   * persist write it) wins over the one above, read at every start.
   */
  configDir: string;
  /**
   * `<data_dir>/server/serf/snapshot`, serf's record of members and Lamport clocks that Nomad keeps:
   * after a restart serf rejoins the members it knew and ignores queries it had already answered.
   */
  snapshotFile: string;
  /** The other servers' serf addresses, joined with retries as Nomad's `server_join` does. */
  join: string[];
  tags: Record<string, string>;
}

export interface KnownServer {
  nodeName: string;
  serfRpcPort: number;
}

/** What `/v1/agent/members` reports about the agent answering it. */
export interface AgentIdentity {
  nodeName: string;
  region: string;
  datacenter: string;
  /** Where a client's server RPCs (here: the member list) go. */
  servers: KnownServer[];
}

export interface GossipReply {
  status: number;
  body: unknown;
}

const LOOPBACK = '127.0.0.1';
// serf answers a keyring query within its own timeout (8 s with the WAN profile for up to 9
// members, 16 s up to 99); a silent agent (stopped, frozen) must not hang the HTTP request forever.
const SERF_RPC_TIMEOUT_MS = 20_000;
const SERF_START_TIMEOUT_MS = 5_000;
const SERF_STOP_GRACE_MS = 2_000;
/** A client tries the next server when one does not answer within this. */
const SERVER_MEMBERS_TIMEOUT_MS = 2_000;
/** Nomad's ErrInvalidMethod, its answer to a wrong method and to server-only calls on a client. */
export const INVALID_METHOD = 'Invalid method';
/** Nomad's ErrPermissionDenied: a missing, unknown or insufficient token. */
export const PERMISSION_DENIED = 'Permission denied';
/** A write policy includes read, as in Nomad's policy levels. */
const GRANTS_FOR: Record<AclCapability, readonly AclGrant[]> = {
  'agent:write': ['management', 'agent-write'],
  'operator:read': ['management', 'operator-read', 'operator-write'],
  'operator:write': ['management', 'operator-write'],
};

/**
 * Nomad's setupKeyrings: `encrypt` seeds the keyring file only when it is missing (compact JSON, file
 * 0600 in a 0700 directory); an existing file always wins, with Nomad's warning. Returns whether serf
 * gets a keyring file, that is whether gossip is encrypted.
 */
function prepareKeyring(gossip: GossipConfig, log: (message: string) => void): boolean {
  const exists = existsSync(gossip.keyringFile);
  const encrypt = encryptFromConfigDir(gossip.configDir) ?? gossip.encrypt;
  if (encrypt === undefined) return exists;
  if (exists) {
    log('WARNING: keyring exists but -encrypt given, using keyring');
    return true;
  }
  mkdirSync(dirname(gossip.keyringFile), { recursive: true, mode: 0o700 });
  writeFileSync(gossip.keyringFile, JSON.stringify([encrypt]), { mode: 0o600 });
  return true;
}

/** The serf agent a Nomad server embeds. Its output goes to the agent's log, as Nomad's does. */
export class GossipAgent {
  readonly #child: ChildProcess;
  readonly #spawnFailed: Promise<never>;
  readonly address: SerfAddress;
  #stopping = false;

  constructor(
    readonly gossip: GossipConfig,
    logFile: string,
    log: (message: string) => void,
  ) {
    this.address = { host: LOOPBACK, port: gossip.rpcPort };
    const encrypted = prepareKeyring(gossip, log);
    // As Nomad's ensurePath: serf creates the snapshot file but not its directory.
    mkdirSync(dirname(gossip.snapshotFile), { recursive: true, mode: 0o755 });
    const args = [
      'agent',
      `-node=${gossip.memberName}`,
      `-bind=${LOOPBACK}:${gossip.bindPort}`,
      `-rpc-addr=${LOOPBACK}:${gossip.rpcPort}`,
      // Nomad's serf runs memberlist's WAN config (nomad/config.go): probe every 5 s with a 3 s
      // timeout, suspicion multiplier 6 (a stopped server stays suspect, and counted, ~30 s), and a
      // keyring query that waits 8 s for a silent server. The product must live with these timings.
      '-profile=wan',
      // Servers start one at a time on first issuance; serf's shortest retry lets the first one find
      // the others within a second (Nomad's retry_join default is 30 s).
      '-retry-interval=1s',
      // Nomad's default log level: memberlist's INFO lines show a server going suspect, then failed.
      '-log-level=info',
      `-snapshot=${gossip.snapshotFile}`,
      ...gossip.join.map((address) => `-retry-join=${address}`),
      ...Object.entries(gossip.tags).flatMap(([name, value]) => ['-tag', `${name}=${value}`]),
      // Never `-encrypt` as well: serf refuses a key given both ways.
      ...(encrypted ? [`-keyring-file=${gossip.keyringFile}`] : []),
    ];
    const output = openSync(logFile, 'a');
    this.#child = spawn('serf', args, { stdio: ['ignore', output, output] });
    closeSync(output);
    this.#spawnFailed = new Promise<never>((_, reject) => this.#child.once('error', reject));
    this.#spawnFailed.catch(() => {});
    this.#child.on('exit', (code, signal) => {
      if (this.#stopping) return;
      log(`==> serf agent exited unexpectedly (${signal ?? code}); the agent stops with it`);
      process.exit(1);
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  async started(): Promise<void> {
    const deadline = Date.now() + SERF_START_TIMEOUT_MS;
    for (;;) {
      try {
        await Promise.race([serfHandshake(this.address, 500), this.#spawnFailed]);
        return;
      } catch (error) {
        if (Date.now() > deadline || (error as NodeJS.ErrnoException).syscall?.startsWith('spawn'))
          throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  }

  /**
   * SIGTERM: serf shuts down without a graceful leave, as Nomad does with leave_on_interrupt=false.
   * SIGKILL: the agent crashed, and its embedded gossip goes down with it.
   */
  async stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    this.#stopping = true;
    if (!this.running) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.kill(signal);
    const forced = setTimeout(() => this.#child.kill('SIGKILL'), SERF_STOP_GRACE_MS);
    await exited;
    clearTimeout(forced);
  }

  /** The last resort when the agent dies unexpectedly (nothing can be awaited in an exit handler). */
  kill(): void {
    this.#stopping = true;
    if (this.running) this.#child.kill('SIGKILL');
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }
}

export async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Decodes `{"Key": "..."}` as Go's encoding/json would into Nomad's KeyringRequest. */
export function keyFromBody(text: string): { key: string } | { error: string } {
  if (text.trim() === '') return { error: 'EOF' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // JavaScript's parse errors quote the input, which here holds a secret.
    return { error: 'invalid JSON in request body' };
  }
  if (parsed === null) return { key: '' };
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { error: 'json: cannot unmarshal non-object into Go value of type structs.KeyringRequest' };
  }
  // encoding/json matches field names case-insensitively.
  const value = Object.entries(parsed).find(([name]) => name.toLowerCase() === 'key')?.[1] ?? '';
  if (typeof value !== 'string') {
    return {
      error: 'json: cannot unmarshal non-string into Go struct field KeyringRequest.Key of type string',
    };
  }
  return { key: value };
}

export const KEY_OPERATIONS: Record<string, KeyOperation> = {
  list: 'list-keys',
  install: 'install-key',
  use: 'use-key',
  remove: 'remove-key',
};

/** Nomad's parseToken: `X-Nomad-Token`, else an `Authorization: Bearer` token; none is anonymous. */
export function requestToken(request: IncomingMessage): string {
  const header = request.headers['x-nomad-token'];
  const token = (Array.isArray(header) ? header[0] : header)?.trim() ?? '';
  if (token !== '') return token;
  const [scheme, ...rest] = (request.headers.authorization ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || rest.length === 0) return '';
  return rest.join(' ').trim().split(' ')[0] ?? '';
}

/**
 * Whether the token may do what `capability` names. Without ACLs everything is allowed; with them
 * the anonymous token, like an unknown one or one without a rule that grants it, is refused.
 */
export function aclAllows(acl: AclConfig | undefined, token: string, capability: AclCapability): boolean {
  if (acl === undefined || !acl.enabled) return true;
  const grants = Object.hasOwn(acl.tokens, token) ? (acl.tokens[token] ?? []) : [];
  return grants.some((grant) => GRANTS_FOR[capability].includes(grant));
}

/**
 * `/v1/agent/keyring/<op>` in Nomad's order of checks: 501 on a client, 403 without agent:write
 * (list included), 404 for an unknown op, 400 for an undecodable body, then serf's error as a
 * plain-text 500. The method is not checked.
 */
export async function keyring(
  gossip: GossipAgent | undefined,
  acl: AclConfig | undefined,
  op: string,
  request: IncomingMessage,
): Promise<GossipReply> {
  if (gossip === undefined) return { status: 501, body: INVALID_METHOD };
  if (!aclAllows(acl, requestToken(request), 'agent:write')) {
    return { status: 403, body: PERMISSION_DENIED };
  }
  const operation = KEY_OPERATIONS[op];
  if (operation === undefined) return { status: 404, body: 'resource not found' };
  let key: string | undefined;
  if (operation !== 'list-keys') {
    const decoded = keyFromBody(await readBody(request));
    if ('error' in decoded) return { status: 400, body: decoded.error };
    key = decoded.key;
  }
  try {
    const answer = await serfKeys(gossip.address, operation, key, SERF_RPC_TIMEOUT_MS);
    if (answer.error) return { status: 500, body: answer.error };
    return { status: 200, body: { Messages: answer.Messages, Keys: answer.Keys, NumNodes: answer.NumNodes } };
  } catch (error) {
    return { status: 500, body: (error as Error).message };
  }
}

/**
 * `/v1/agent/members`: Nomad answers with Status.Members, which a client forwards to a server; either
 * way it is one server's gossip view.
 */
export async function members(
  gossip: GossipAgent | undefined,
  agent: AgentIdentity,
  request: IncomingMessage,
): Promise<GossipReply> {
  if (request.method !== 'GET') return { status: 405, body: INVALID_METHOD };
  const candidates: KnownServer[] =
    gossip === undefined ? agent.servers : [{ nodeName: agent.nodeName, serfRpcPort: gossip.gossip.rpcPort }];
  if (candidates.length === 0) return { status: 500, body: 'no servers' };
  let failure = '';
  for (const server of candidates) {
    try {
      const list = await serfMembers({ host: LOOPBACK, port: server.serfRpcPort }, SERVER_MEMBERS_TIMEOUT_MS);
      return {
        status: 200,
        body: {
          ServerName: server.nodeName,
          ServerRegion: agent.region,
          ServerDC: agent.datacenter,
          Members: list,
        },
      };
    } catch (error) {
      failure = (error as Error).message;
    }
  }
  return { status: 500, body: gossip === undefined ? `rpc error: ${failure}` : failure };
}
