// The Nomad stand-in: one process per node, started by the node's supervisor (systemd's role).
// What it models, and from where (Nomad's source: command/agent, nomad/, helper/tlsutil):
// - TLS. HTTPS on the node's port from agent.crt/agent.key/ca.crt, asking for a client certificate
//   only with verify_https_client (no name is checked on it) (./standin-http.ts). Servers also listen
//   for RPC on their rpcPort, always mutual TLS with the current files and Nomad's name rules
//   (./rpc.ts). A CA bundle loads the blocks that parse and fails only when none does; an Ed25519 key
//   fails like a bad CA (./standin-tls.ts).
// - Raft. Servers form a modelled Raft cluster over that RPC (./raft.ts): leader, peers, health and
//   autopilot's dead-server cleanup follow from which servers can reach each other.
// - Health and leader as Nomad answers them (./standin-endpoints.ts): a server's health and
//   /v1/status/leader forward Status.Leader to the leader (which its serf agent must know as alive)
//   and hold up to RPCHoldTimeout without one; a client's health only needs a known server, while
//   its /v1/status/leader goes over its own RPC to a server.
// - Autopilot's health and configuration (/v1/operator/autopilot/*), answered by the leader from its
//   autopilot state (./autopilot.ts) under ACL operator:read / operator:write.
// - SIGHUP reloads only when the files' contents changed, in Nomad's order: the new leaf is live at
//   once (HTTPS and RPC), then the server's RPC listener is rebuilt with its connections closed,
//   then the HTTP listener (a short port gap; open keep-alive connections keep the old certificate).
//   Bad files follow the configured Nomad version (see reload()).
// - On servers, the serf agent Nomad embeds and the gossip endpoints (./gossip.ts).
// - Raft also waits for bootstrap_expect (every configured server alive in serf) before its first
//   election, and autopilot prunes serf-failed voters (./raft.ts).
// Not modelled: a Raft log, persisted terms, leadership transfer, PUT /v1/agent/reload (2.0.3+),
// ACLs outside the keyring and autopilot endpoints, and everything in Nomad that is not TLS, Raft or
// gossip.
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { exitsOnReloadError } from './agent-options';
import { GossipAgent } from './gossip';
import { RaftModel } from './raft';
import { RpcListener, rpcCall, type TlsFiles } from './rpc';
import { serfMembers } from './serf-rpc';
import type { ReadyMessage, StandinConfig } from './standin-config';
import { type AgentState, answerRpc, route } from './standin-endpoints';
import { AgentHttp, LOOPBACK } from './standin-http';
import { type Material, readMaterial, serial, tlsFiles } from './standin-tls';

/** How long a server's serf agent may take to list its members for autopilot. */
const SERF_MEMBERS_TIMEOUT_MS = 2_000;
/** How long a failed reload's new leaf is served before the agent exits (fail-next-reload fault). */
const FAILED_RELOAD_EXIT_DELAY_MS = 300;

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as StandinConfig;
const behaviour = config.behaviour;

function log(message: string): void {
  appendFileSync(config.logFile, `${new Date().toISOString()} [${config.nodeName}] ${message}\n`);
}

let material: Material;
/** The files in force: the CA pools, and the leaf both listeners serve and RPC presents. */
let files: TlsFiles;
try {
  material = readMaterial(config);
  files = tlsFiles(material);
  createSecureContext(files);
} catch (error) {
  log(`==> Error starting agent: ${(error as Error).message}`);
  process.exit(1);
}

const gossip = config.gossip === undefined ? undefined : new GossipAgent(config.gossip, config.logFile, log);
process.on('exit', () => gossip?.kill());

const rpc: RpcListener | undefined =
  config.server === undefined
    ? undefined
    : new RpcListener(config.server.rpcPort, config.region, files, (request) => answerRpc(agent, request));

const raft: RaftModel | undefined =
  config.server === undefined
    ? undefined
    : new RaftModel({
        self: {
          id: config.nodeName,
          rpcPort: config.server.rpcPort,
          serfName: `${config.nodeName}.${config.region}`,
        },
        members: config.rpcServers.map((server) => ({
          id: server.nodeName,
          rpcPort: server.rpcPort,
          serfName: `${server.nodeName}.${config.region}`,
        })),
        behaviour,
        raftStateFile: join(config.server.raftDir, 'configuration.json'),
        call: (member, request, timeoutMs) =>
          rpcCall(member.rpcPort, request, {
            files: rpc!.files,
            region: config.region,
            timeoutMs,
            track: rpc!.outgoing,
          }),
        serfStatuses: async () => {
          const port = config.gossip?.rpcPort ?? 0;
          const list = await serfMembers({ host: LOOPBACK, port }, SERF_MEMBERS_TIMEOUT_MS);
          return new Map(list.map((member) => [member.Name, member.Status]));
        },
        log,
      });

const agent: AgentState = { config, raft, gossip, files: () => files };
const http = new AgentHttp(
  {
    port: config.port,
    verifyHttpsClient: behaviour.verifyHttpsClient,
    route: (request) => route(agent, request),
  },
  files,
);

async function reload(): Promise<void> {
  if (existsSync(config.ignoreSighupFile)) {
    log('SIGHUP received; ignored (fault injected)');
    return;
  }
  const exitsOnError = exitsOnReloadError(behaviour.nomadVersion);
  let next: Material;
  try {
    next = readMaterial(config);
  } catch (error) {
    // From 1.10.1 a client's reload error ends the agent; a server's TLS reload error is only logged.
    if (exitsOnError && config.role === 'client') {
      log(`Fatal error while reloading: ${(error as Error).message}`);
      return exitWith(1);
    }
    log(`failed to reload the config: parsing TLS certificate: ${(error as Error).message}`);
    return;
  }
  if (next.checksum === material.checksum) {
    log('SIGHUP received; TLS files unchanged, nothing reloaded');
    return;
  }
  // 1. The shared key loader: the new leaf is live at once on HTTPS and RPC, with the old CA pools.
  //    A pair that does not match is refused here and the old one stays.
  let leaf: TlsFiles;
  try {
    leaf = { ...files, cert: next.cert, key: next.key };
    createSecureContext(leaf);
  } catch (error) {
    log(`failed to reload the config: loading key pair: ${(error as Error).message}`);
    return;
  }
  files = leaf;
  http.useLeaf(files);
  rpc?.useLeaf(next.cert, next.key);
  log(`reloading TLS: now serving serial ${serial(next.cert)}`);
  if (existsSync(config.failNextReloadFile)) {
    rmSync(config.failNextReloadFile, { force: true });
    log('Fatal error while reloading: server reload failed (fault injected)');
    setTimeout(() => void exitWith(1), FAILED_RELOAD_EXIT_DELAY_MS);
    return;
  }
  // 2. The TLS configuration from the new files. A CA without a good certificate (or an Ed25519 key)
  //    ends a >= 1.10.1 agent here, after its new leaf was served; older ones keep the old CA pools.
  let reloaded: TlsFiles;
  try {
    reloaded = tlsFiles(next);
  } catch (error) {
    if (exitsOnError) {
      log(`Fatal error while reloading: ${(error as Error).message}`);
      return exitWith(1);
    }
    log(`failed to reload the config: ${(error as Error).message}`);
    return;
  }
  material = next;
  files = reloaded;
  // 3. Server reload: a new RPC listener, every RPC and Raft connection closed.
  if (rpc !== undefined) {
    log('reloading server connections due to configuration changes');
    await rpc.reload(files);
  }
  // 4. The HTTP listener, last.
  log('reloading HTTP server with new TLS configuration');
  await http.rebuild(files);
}

// Signals are handled one reload at a time, as Nomad's signal loop does.
let reloads: Promise<void> = Promise.resolve();
process.on('SIGHUP', () => {
  reloads = reloads
    .then(reload)
    .catch((error: Error) => log(`failed to reload the config: ${error.message}`));
});

let shuttingDown = false;
/** Stops serving and waits for serf to go, so the unit has no process left once the agent exits. */
async function exitWith(code: 0 | 1): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  http.close();
  await Promise.all([raft?.stop(), rpc?.close()]);
  await gossip?.stop(code === 0 ? 'SIGTERM' : 'SIGKILL');
  process.exit(code);
}
process.on('SIGINT', () => void exitWith(0));
process.on('SIGTERM', () => void exitWith(0));
// The supervisor went away without stopping the unit (a killed test run): leave nothing behind.
process.on('disconnect', () => void exitWith(0));

async function start(): Promise<void> {
  try {
    await gossip?.started();
  } catch (error) {
    log(`==> Error starting agent: serf: ${(error as Error).message}`);
    return exitWith(1);
  }
  try {
    await rpc?.listen();
    await http.listen();
  } catch (error) {
    log(`==> Error starting agent: ${(error as Error).message}`);
    return exitWith(1);
  }
  raft?.start();
  log(`agent started, serving serial ${serial(files.cert)} on ${LOOPBACK}:${config.port}`);
  if (gossip !== undefined) {
    log(`serf agent ${gossip.gossip.memberName} gossiping on ${LOOPBACK}:${gossip.gossip.bindPort}`);
  }
  if (rpc !== undefined) log(`RPC listening with mutual TLS on ${LOOPBACK}:${rpc.port}`);
  const ready: ReadyMessage = { ready: true, processes: gossip?.pid === undefined ? [] : [gossip.pid] };
  process.send?.(ready);
}

void start();
