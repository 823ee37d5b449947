import { gzipSync } from 'node:zlib';
import type { CertificateCommands, InstallRequest, SignedPair } from '../certificates/commands';
import {
  failureReason,
  installOutputSchema,
  lastJsonLine,
  prepareOutputSchema,
} from '../certificates/outputs';
import type { ClusterConfig } from '../config';
import {
  DOCUMENT_SIZE_BUDGET_BYTES,
  type DocumentParameters,
  documentSizeBytes,
  installExecutionTimeoutSeconds,
  validateDocumentParameters,
} from '../documents';
import type { CommandGateway } from './ports';

/** SendCommand's limit on instance ids per call. */
const SSM_MAX_TARGETS = 50;
/** The longest attempt id the routing key leaves room for; the budget reserves it. */
const ATTEMPT_ID_RESERVE = 'x'.repeat(64);

/**
 * The certificate steps as SSM Run Command carries them: one prepare or install document per batch
 * of up to 50 nodes, every parameter validated against its allowedPattern, and an install's
 * certificates packed so the whole command stays under SSM's 64 KB.
 */
export class SsmCertificateCommands implements CertificateCommands {
  constructor(
    private readonly gateway: CommandGateway,
    private readonly cluster: ClusterConfig,
  ) {}

  prepareBatches(targets: readonly string[]): string[][] {
    const batches: string[][] = [];
    for (let index = 0; index < targets.length; index += SSM_MAX_TARGETS)
      batches.push(targets.slice(index, index + SSM_MAX_TARGETS));
    return batches;
  }

  prepare(targets: readonly string[], attemptId: string, routingKey: string): Promise<string> {
    const files = this.cluster.files;
    return this.gateway.send(
      'prepare',
      targets,
      {
        attemptId,
        keyType: this.cluster.certificates.keyType,
        agentKeyPath: files.agentKey.path,
        agentCertPath: files.agentCert.path,
        cliKeyPath: files.cliKey.path,
        cliCertPath: files.cliCert.path,
      },
      routingKey,
    );
  }

  /**
   * The packed certificates must fit the bytes the document and every other parameter leave;
   * batches also never pass SSM's 50 targets. The packed size grows with the batch, so the largest
   * batch that fits is found by halving rather than by packing once per added node.
   */
  installBatches<Item extends { pair: SignedPair }>(
    items: readonly Item[],
    request: Omit<InstallRequest, 'pairs' | 'attemptId'>,
  ): Item[][] {
    const budget = this.#certificateBudget(request);
    const fits = (count: number, rest: readonly Item[]) =>
      packCertificates(rest.slice(0, count).map((item) => item.pair)).length <= budget;
    const batches: Item[][] = [];
    let rest = items;
    while (rest.length > 0) {
      let count = Math.min(rest.length, SSM_MAX_TARGETS);
      if (!fits(count, rest)) {
        let low = 1;
        let high = count - 1;
        while (low < high) {
          const middle = Math.ceil((low + high) / 2);
          if (fits(middle, rest)) low = middle;
          else high = middle - 1;
        }
        count = low;
      }
      batches.push(rest.slice(0, count));
      rest = rest.slice(count);
    }
    return batches;
  }

  install(targets: readonly string[], request: InstallRequest, routingKey: string): Promise<string> {
    return this.gateway.send(
      'install',
      targets,
      {
        ...this.#installParameters(request),
        attemptId: request.attemptId,
        certificates: packCertificates(request.pairs),
      },
      routingKey,
    );
  }

  readPrepared(stdout: string) {
    const parsed = prepareOutputSchema.safeParse(lastJsonLine(stdout));
    if (!parsed.success) return undefined;
    return {
      attemptId: parsed.data.attemptId,
      agentCsrDerBase64: parsed.data.agentCsr,
      cliCsrDerBase64: parsed.data.cliCsr,
    };
  }

  readInstalled(stdout: string) {
    const parsed = installOutputSchema.safeParse(lastJsonLine(stdout));
    if (!parsed.success) return undefined;
    return { attemptId: parsed.data.attemptId, action: parsed.data.action, agent: parsed.data.agent };
  }

  failureReason(stdout: string, detail: string): string {
    return failureReason(stdout, detail);
  }

  /** Every install parameter but the batch's certificates and attempt id. */
  #installParameters(
    request: Omit<InstallRequest, 'pairs' | 'attemptId'>,
  ): Omit<DocumentParameters<'install'>, 'attemptId' | 'certificates'> {
    const files = this.cluster.files;
    const fileParameters = Object.fromEntries(
      (['agentCert', 'agentKey', 'ca', 'cliCert', 'cliKey'] as const).flatMap((file) => [
        [`${file}Path`, files[file].path],
        [`${file}Mode`, files[file].mode],
        [`${file}Owner`, files[file].owner],
        [`${file}Group`, files[file].group],
      ]),
    ) as Record<string, string>;
    const { serverHealthTimeoutSeconds } = this.cluster.rollout;
    const { address, verifyHttpsClient, settleSeconds } = this.cluster.nomad;
    return {
      ...(fileParameters as Omit<DocumentParameters<'install'>, 'attemptId'>),
      cluster: this.cluster.name,
      role: request.role,
      region: this.cluster.region,
      mode: request.mode,
      chain: base64(request.chainPem),
      caBundle: base64(request.caBundlePem),
      minimumValiditySeconds: String(this.cluster.certificates.minimumValidity),
      healthTimeoutSeconds: String(serverHealthTimeoutSeconds),
      settleSeconds: String(settleSeconds),
      nomadAddress: address,
      verifyHttpsClient: String(verifyHttpsClient),
      executionTimeout: String(installExecutionTimeoutSeconds(serverHealthTimeoutSeconds, settleSeconds)),
    };
  }

  /** Bytes left for the certificates parameter: the document, chain, CA bundle and every other parameter count too. */
  #certificateBudget(request: Omit<InstallRequest, 'pairs' | 'attemptId'>): number {
    const fixed = validateDocumentParameters('install', {
      ...this.#installParameters(request),
      attemptId: ATTEMPT_ID_RESERVE,
      certificates: 'A',
    });
    return DOCUMENT_SIZE_BUDGET_BYTES - documentSizeBytes('install', fixed);
  }
}

/**
 * The install document's certificates parameter, as install.sh unpacks it: base64 of the gzip of
 * every leaf's PEM. Issuer, extensions and names repeat from node to node, so two P-256 leaves take
 * about 570 characters instead of 2,400, and a wave of 50 fits one command.
 */
export function packCertificates(pairs: readonly SignedPair[]): string {
  const pems = pairs.flatMap((pair) => [pair.agentCertificatePem, pair.cliCertificatePem]);
  return gzipSync(pems.join('\n'), { level: 9 }).toString('base64');
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}
