import { createHash, randomBytes, webcrypto } from 'node:crypto';
import { ManualClock } from '../../local/clock';
import { unpackCertificates } from '../../local/sim/node-certificates';
import { RecordingLogger, RecordingTelemetry } from '../../local/world/recording';
import type { CommandGateway, InvocationListing, InvocationOutcome } from '../../shared/aws/ports';
import type { CertificateKind, NodeRole } from '../../shared/certificates/names';
import type {
  CertificateAuthority,
  EventPublisher,
  InventoryNode,
  IssuedCertificate,
  NodeInventory,
  ProvisionedNode,
  RotationEventType,
  TrustedChain,
} from '../../shared/certificates/ports';
import { CertificateRotation } from '../../shared/certificates/rotation';
import { x509 } from '../../shared/certificates/x509';
import type { ClusterConfig } from '../../shared/config';
import { parseClusterConfig } from '../../shared/config';
import type { DocumentKind } from '../../shared/documents';
import { TransientError } from '../../shared/errors';
import type { GossipKeyCustody, GossipKeyStages, StagedGossipKey } from '../../shared/gossip/custody';
import { applyCommandStatus } from '../../shared/intake/command-status';
import { formatRoutingKey, parseRoutingKey, type RoutingKey } from '../../shared/rollout/routing';
import type { StateStore } from '../../shared/state/store';
import { InMemoryStateStore } from './in-memory-state-store';
import { testInventory } from './inventory';
import { UNCHECKED_TRUST_ANCHORS } from './trust-anchors';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ec = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A CA that signs CSRs in-process with the names it is given, like Vault's sign endpoint. */
export class InProcessAuthority implements CertificateAuthority {
  sealed = false;
  readonly revoked: string[] = [];
  readonly signed: { kind: CertificateKind; serial: string }[] = [];
  /** Intermediates placed before the CA in every answer's chain, e.g. to make the chain large. */
  extraChainPems: string[] = [];
  #ca?: { cert: x509.X509Certificate; keys: CryptoKeyPair };

  constructor(private readonly clock: ManualClock) {}

  async assertReady(): Promise<void> {
    if (this.sealed) throw new TransientError('Vault is sealed');
  }

  async sign(request: Parameters<CertificateAuthority['sign']>[0]): Promise<IssuedCertificate> {
    await this.assertReady();
    const ca = await this.#authority();
    const csr = new x509.Pkcs10CertificateRequest(request.csrPem);
    const serial = randomBytes(16).toString('hex');
    const notBefore = new Date(this.clock.now() - 30_000);
    const notAfter = new Date(this.clock.now() + request.ttlSeconds * 1000);
    const usages =
      request.kind === 'cli' ? ['1.3.6.1.5.5.7.3.2'] : ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      subject: `CN=${request.names.commonName}`,
      issuer: ca.cert.subject,
      notBefore,
      notAfter,
      publicKey: await csr.publicKey.export(ec, ['verify'], webcrypto as never),
      signingKey: ca.keys.privateKey,
      signingAlgorithm: ec,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          ...request.names.dnsNames.map((value) => ({ type: 'dns' as const, value })),
          ...request.names.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
        ]),
        new x509.ExtendedKeyUsageExtension(usages),
      ],
    });
    this.signed.push({ kind: request.kind, serial });
    return {
      certificatePem: cert.toString('pem'),
      serial: serial.match(/../g)!.join(':'),
      notBefore: notBefore.getTime(),
      notAfter: notAfter.getTime(),
      caChainPems: [...this.extraChainPems, ca.cert.toString('pem')],
    };
  }

  async revoke(serial: string): Promise<void> {
    this.revoked.push(serial);
  }

  async trustedChain(): Promise<TrustedChain> {
    const ca = await this.#authority();
    return {
      pems: [...this.extraChainPems, ca.cert.toString('pem')],
      issued: async (certificatePem) => {
        try {
          const leaf = new x509.X509Certificate(certificatePem);
          return await leaf.verify({ publicKey: ca.cert.publicKey, signatureOnly: true });
        } catch {
          return false;
        }
      },
    };
  }

  async #authority() {
    if (this.#ca === undefined) {
      const keys = (await webcrypto.subtle.generateKey(ec, true, ['sign', 'verify'])) as CryptoKeyPair;
      const cert = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: '01',
        name: 'CN=fake-ca',
        notBefore: new Date(this.clock.now() - 86_400_000),
        notAfter: new Date(this.clock.now() + 365 * 86_400_000),
        keys,
        signingAlgorithm: ec,
      });
      this.#ca = { cert, keys };
    }
    return this.#ca;
  }
}

export interface SentCommand {
  commandId: string;
  kind: DocumentKind;
  instanceIds: string[];
  parameters: Record<string, string>;
  tag: RoutingKey;
  at: number;
}

type NodeBehaviour = 'ok' | 'fail-install' | 'offline';

/**
 * SSM and the nodes, in-process: prepare makes a real key + CSR, install answers with the serial the
 * node found for its key. Invocations finish only when the test says so, so races are deterministic.
 */
export class FakeFleet implements CommandGateway, NodeInventory {
  readonly commands: SentCommand[] = [];
  readonly behaviour = new Map<string, NodeBehaviour>();
  throttleNextSends = 0;
  readonly #nodes: InventoryNode[];
  readonly #results = new Map<string, InvocationOutcome & { comment: string }>();
  readonly #pendingKeys = new Map<string, { agent: string; cli: string }>();

  constructor(
    nodes: { instanceId: string; role: NodeRole }[],
    private readonly clock: ManualClock,
  ) {
    this.#nodes = nodes.map((node, index) => ({ ...node, ip: `10.0.0.${index + 10}`, online: true }));
  }

  async list(_cluster: ClusterConfig): Promise<InventoryNode[]> {
    return this.#nodes.map((node) => ({
      ...node,
      online: this.behaviour.get(node.instanceId) !== 'offline',
    }));
  }

  /** What EC2 says of one instance: the fleet's own record, whatever the state table holds. */
  async identify(_cluster: ClusterConfig, instanceId: string): Promise<ProvisionedNode | undefined> {
    const node = this.#nodes.find((candidate) => candidate.instanceId === instanceId);
    return node && { instanceId: node.instanceId, role: node.role, ip: node.ip };
  }

  async send<Kind extends DocumentKind>(
    kind: Kind,
    instanceIds: readonly string[],
    parameters: object,
    comment: string,
  ): Promise<string> {
    if (this.throttleNextSends > 0) {
      this.throttleNextSends -= 1;
      const error = new Error('Rate exceeded');
      error.name = 'ThrottlingException';
      throw error;
    }
    const commandId = `cmd-${this.commands.length + 1}`;
    this.commands.push({
      commandId,
      kind,
      instanceIds: [...instanceIds],
      parameters: parameters as Record<string, string>,
      tag: parseRoutingKey(comment)!,
      at: this.clock.now(),
    });
    return commandId;
  }

  async invocation(commandId: string, instanceId: string): Promise<InvocationOutcome & { comment?: string }> {
    const result = this.#results.get(`${commandId}/${instanceId}`);
    if (result) return result;
    const command = this.commands.find((candidate) => candidate.commandId === commandId);
    return command ? { state: 'running', comment: commentOf(command) } : { state: 'missing' };
  }

  async invocations(commandId: string): Promise<InvocationListing> {
    const command = this.commands.find((candidate) => candidate.commandId === commandId);
    if (command === undefined) return { results: new Map(), cut: [] };
    const results = new Map<string, InvocationOutcome>();
    for (const instanceId of command.instanceIds) {
      const { comment: _, ...outcome } = this.#results.get(`${commandId}/${instanceId}`) ?? {
        state: 'running',
      };
      results.set(instanceId, outcome);
    }
    return { comment: commentOf(command), results, cut: [] };
  }

  async findSent(instanceId: string, comment: string, since: number): Promise<string | undefined> {
    return this.commands.find(
      (command) =>
        command.at >= since && command.instanceIds.includes(instanceId) && commentOf(command) === comment,
    )?.commandId;
  }

  /** Let the node run the command; returns the invocations it completed. */
  async complete(command: SentCommand): Promise<{ commandId: string; instanceId: string }[]> {
    const done = [];
    for (const instanceId of command.instanceIds) {
      const comment = commentOf(command);
      const behaviour = this.behaviour.get(instanceId) ?? 'ok';
      let outcome: InvocationOutcome;
      if (behaviour === 'offline') {
        outcome = { state: 'failed', detail: 'Undeliverable', stdout: '' };
      } else if (command.kind === 'gossip') {
        // The gossip steps need real serf agents: the local world's sandboxes run them.
        outcome = { state: 'failed', detail: 'Failed', stdout: '' };
      } else if (command.kind === 'prepare') {
        const agent = await csr();
        const cli = await csr();
        this.#pendingKeys.set(instanceId, { agent: agent.publicKey, cli: cli.publicKey });
        outcome = {
          state: 'succeeded',
          stdout: JSON.stringify({
            ok: true,
            stage: 'prepare',
            attemptId: command.parameters.attemptId,
            agentCsr: agent.derBase64,
            cliCsr: cli.derBase64,
            current: { agent: null, cli: null },
          }),
        };
      } else if (behaviour === 'fail-install') {
        outcome = {
          state: 'failed',
          detail: 'Failed',
          stdout:
            '{"ok":false,"stage":"install","reason":"new-certificate-not-served","touched":true,"restored":true}',
        };
      } else {
        const serial = await this.#serialFor(instanceId, command.parameters.certificates!);
        outcome = {
          state: 'succeeded',
          stdout: JSON.stringify({
            ok: true,
            stage: 'install',
            attemptId: command.parameters.attemptId,
            changed: true,
            action: command.parameters.mode,
            servedSerial: serial,
            agent: { serial, notBefore: 0, notAfter: 0 },
            cli: { serial: 'aa', notBefore: 0, notAfter: 0 },
          }),
        };
      }
      this.#results.set(`${command.commandId}/${instanceId}`, { ...outcome, comment });
      done.push({ commandId: command.commandId, instanceId });
    }
    return done;
  }

  async #serialFor(instanceId: string, certificatesBase64: string): Promise<string> {
    const keys = this.#pendingKeys.get(instanceId)!;
    const pems = unpackCertificates(certificatesBase64).match(
      /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g,
    )!;
    for (const pem of pems) {
      const cert = new x509.X509Certificate(pem);
      if (Buffer.from(cert.publicKey.rawData).toString('base64') === keys.agent) return cert.serialNumber;
    }
    throw new Error(`no certificate for ${instanceId} in the batch`);
  }
}

function commentOf(command: SentCommand): string {
  return formatRoutingKey(command.tag);
}

async function csr(): Promise<{ derBase64: string; publicKey: string }> {
  const keys = (await webcrypto.subtle.generateKey(ec, true, ['sign', 'verify'])) as CryptoKeyPair;
  const request = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=node',
    keys,
    signingAlgorithm: ec,
  });
  const publicKey = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey)).toString('base64');
  return { derBase64: Buffer.from(request.rawData).toString('base64'), publicKey };
}

export class RecordingEvents implements EventPublisher {
  readonly events: { type: RotationEventType; detail: Record<string, unknown> }[] = [];

  async publish(type: RotationEventType, detail: Record<string, unknown>): Promise<void> {
    this.events.push({ type, detail });
  }
}

/** The gossip secret's stages in memory, as the custody port shows them (no key is ever kept). */
export class InMemoryGossipKeys implements GossipKeyCustody {
  readonly #stages: GossipKeyStages = {};

  async stages(): Promise<GossipKeyStages> {
    return { ...this.#stages };
  }

  async stagePending(_secretId: string, rolloutId: string): Promise<Required<StagedGossipKey>> {
    const fingerprint = createHash('sha256').update(rolloutId).digest('hex').slice(0, 16);
    this.#stages.pending = {
      versionId: `gossip-${fingerprint}-${'0'.repeat(24)}`,
      fingerprint,
      ofRollout: true,
    };
    return this.#stages.pending as Required<StagedGossipKey>;
  }

  async promotePending(): Promise<void> {
    if (this.#stages.pending === undefined) return;
    this.#stages.previous = this.#stages.current;
    this.#stages.current = this.#stages.pending;
    delete this.#stages.pending;
  }

  async discardPending(): Promise<void> {
    delete this.#stages.pending;
  }
}

export interface FakeClusterHarness {
  cluster: ClusterConfig;
  clock: ManualClock;
  table: StateStore;
  fleet: FakeFleet;
  authority: InProcessAuthority;
  events: RecordingEvents;
  telemetry: RecordingTelemetry;
  logger: RecordingLogger;
  gossipKeys: InMemoryGossipKeys;
  rotation(): CertificateRotation;
}

export async function fakeCluster(
  nodes: { instanceId: string; role: NodeRole }[],
  overrides: Record<string, unknown> = {},
): Promise<FakeClusterHarness> {
  const clock = new ManualClock(Date.UTC(2026, 10, 22, 12));
  const cluster = parseClusterConfig({
    name: 'prod',
    inventory: testInventory('prod', Math.max(1, nodes.filter((node) => node.role === 'server').length)),
    vault: {
      address: 'https://vault:8200',
      tokenSecretId: 'token',
      tokenRotation: { iamServerIdHeader: 'vault.internal' },
    },
    rollout: { clientWaveSize: 2, maxAttempts: 2 },
    ...overrides,
    certificates: { ...UNCHECKED_TRUST_ANCHORS, ...(overrides.certificates as object | undefined) },
  });
  const harness: FakeClusterHarness = {
    cluster,
    clock,
    table: new InMemoryStateStore(),
    fleet: new FakeFleet(nodes, clock),
    authority: new InProcessAuthority(clock),
    events: new RecordingEvents(),
    telemetry: new RecordingTelemetry(),
    logger: new RecordingLogger(),
    gossipKeys: new InMemoryGossipKeys(),
    rotation: () =>
      new CertificateRotation({
        cluster,
        table: harness.table,
        inventory: harness.fleet,
        commands: harness.fleet,
        authority: harness.authority,
        events: harness.events,
        telemetry: harness.telemetry,
        logger: harness.logger,
        clock,
        gossipKeys: harness.gossipKeys,
      }),
  };
  return harness;
}

/** A finished command's event, through the event path as command-status runs it. */
export async function deliverCommand(h: FakeClusterHarness, commandId: string): Promise<void> {
  const runtime = {
    commands: h.fleet,
    clusterNames: () => [h.cluster.name],
    rotation: () => h.rotation(),
    logger: h.logger,
  };
  await applyCommandStatus(runtime, { commandId, status: 'Success' }, Number.MAX_SAFE_INTEGER);
}

/** One target's result of a command handed to the engine on its own, for a test that orders the targets. */
export async function deliverResult(
  h: FakeClusterHarness,
  commandId: string,
  instanceId: string,
): Promise<void> {
  const { comment, ...outcome } = await h.fleet.invocation(commandId, instanceId);
  await h
    .rotation()
    .onCommand(parseRoutingKey(comment)!, new Map([[instanceId, outcome]]), Number.MAX_SAFE_INTEGER);
}
