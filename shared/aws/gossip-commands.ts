import type { GossipOperation } from '../gossip/outputs';
import type { GossipClusterConfig, GossipCommandRequest, GossipCommands } from '../gossip/plan';
import type { CommandGateway } from './ports';

/** Long enough for a keyring query under Nomad's WAN timings on every server, plus the key read. */
const GOSSIP_EXECUTION_TIMEOUT_SECONDS = 300;
/** A repair's or restart's work besides waiting for the server to rejoin: stop, write, start, the gate, the report. */
const REPAIR_WORK_SECONDS = 120;

/**
 * The gossip steps as SSM Run Command carries them: the gossip document with the cluster's secret,
 * agent address and file paths. Which key a step acts on travels only as a secret version id and a
 * fingerprint; the servers read the key themselves.
 */
export class SsmGossipCommands implements GossipCommands {
  constructor(
    private readonly gateway: CommandGateway,
    private readonly cluster: GossipClusterConfig,
  ) {}

  send(
    operation: GossipOperation,
    targets: readonly string[],
    request: GossipCommandRequest,
    routingKey: string,
  ): Promise<string> {
    const { gossip, nomad, files, rollout } = this.cluster;
    const healthTimeout = rollout.serverHealthTimeoutSeconds;
    return this.gateway.send(
      'gossip',
      targets,
      {
        attemptId: request.attemptId,
        operation,
        secretId: gossip.secretId,
        versionId: request.versionId ?? 'none',
        keyFingerprint: request.keyFingerprint ?? 'none',
        tokenSecretId: gossip.aclTokenSecretId ?? 'none',
        nomadAddress: nomad.address,
        verifyHttpsClient: String(nomad.verifyHttpsClient),
        caPath: files.ca.path,
        cliCertPath: files.cliCert.path,
        cliKeyPath: files.cliKey.path,
        keyringPath: gossip.keyringPath,
        encryptConfigPath: gossip.encryptConfigPath,
        encryptConfigOwner: gossip.encryptConfigOwner,
        expectedServers: String(request.expectedServers ?? 1),
        healthTimeoutSeconds: String(healthTimeout),
        stabilizationSeconds: String(gossip.stabilizationSeconds),
        lastServer: String(request.lastServer === true),
        restoreCleanup: String(request.restoreCleanup === true),
        executionTimeout: String(
          Math.max(GOSSIP_EXECUTION_TIMEOUT_SECONDS, healthTimeout + REPAIR_WORK_SECONDS),
        ),
      },
      routingKey,
    );
  }
}
