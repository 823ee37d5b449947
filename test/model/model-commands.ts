import { SsmCertificateCommands } from '../../shared/aws/certificate-commands';
import type { CertificateCommands, InstallRequest, SignedPair } from '../../shared/certificates/commands';
import type { ClusterConfig } from '../../shared/config';
import type { ModelFleet } from './model-fleet';

/** The certificate steps of one cluster, sent to the model fleet; batching and parsing stay the real ones. */
export class ModelCommands implements CertificateCommands {
  readonly #codec: SsmCertificateCommands;

  constructor(
    private readonly fleet: ModelFleet,
    private readonly cluster: ClusterConfig,
  ) {
    this.#codec = new SsmCertificateCommands(fleet, cluster);
  }

  prepareBatches(targets: readonly string[]): string[][] {
    return this.#codec.prepareBatches(targets);
  }

  async prepare(targets: readonly string[], attemptId: string, routingKey: string): Promise<string> {
    return this.fleet.dispatch(this.cluster.name, 'prepare', targets, { attemptId, routingKey });
  }

  installBatches<Item extends { pair: SignedPair }>(
    items: readonly Item[],
    request: Omit<InstallRequest, 'pairs' | 'attemptId'>,
  ): Item[][] {
    return this.#codec.installBatches(items, request);
  }

  async install(targets: readonly string[], request: InstallRequest, routingKey: string): Promise<string> {
    return this.fleet.dispatch(this.cluster.name, 'install', targets, {
      attemptId: request.attemptId,
      routingKey,
      mode: request.mode,
      pairs: request.pairs,
    });
  }

  readPrepared(stdout: string) {
    return this.#codec.readPrepared(stdout);
  }

  readInstalled(stdout: string) {
    return this.#codec.readInstalled(stdout);
  }

  failureReason(stdout: string, detail: string): string {
    return this.#codec.failureReason(stdout, detail);
  }
}
