import type { ClusterConfig } from '../config';
import type { SignedSet } from '../state/records';
import { validateCsr } from './csr';
import { certificateNames } from './names';
import type { CertificateAuthority, ProvisionedNode, TrustedChain } from './ports';

/** How long one read of the CA chain serves: a batch and its send, not across a CA rotation. */
const CHAIN_REUSE_MS = 60_000;

/** Sign a node's agent and CLI CSRs with the names we decide, never the CSRs'. */
export async function signPair(
  authority: CertificateAuthority,
  cluster: ClusterConfig,
  node: ProvisionedNode,
  agentCsrDerBase64: string,
  cliCsrDerBase64: string,
): Promise<SignedSet> {
  const { keyType, ttl } = cluster.certificates;
  const agentCsr = await validateCsr(agentCsrDerBase64, keyType, 'agent CSR');
  const cliCsr = await validateCsr(cliCsrDerBase64, keyType, 'CLI CSR');
  const agent = await authority.sign({
    kind: node.role,
    csrPem: agentCsr,
    names: certificateNames(node.role, cluster, node.ip),
    ttlSeconds: ttl,
  });
  const cli = await authority.sign({
    kind: 'cli',
    csrPem: cliCsr,
    names: certificateNames('cli', cluster),
    ttlSeconds: ttl,
  });
  return {
    agentCertificatePem: agent.certificatePem,
    cliCertificatePem: cli.certificatePem,
    agent: { serial: agent.serial, notBefore: agent.notBefore, notAfter: agent.notAfter },
    cli: { serial: cli.serial, notBefore: cli.notBefore, notAfter: cli.notAfter },
  };
}

/** The agent's chain file (the intermediates, or the CA when there are none) and the CA bundle. */
export function chainFiles(chain: TrustedChain): { chainPem: string; caBundlePem: string } {
  const intermediates = chain.pems.slice(0, -1);
  return {
    chainPem: (intermediates.length > 0 ? intermediates : chain.pems).join('\n'),
    caBundlePem: chain.pems.join('\n'),
  };
}

/** One read of the chain for a batch and its send, so one install never mixes two chains. */
export class CachedChain {
  #cached?: { at: number; read: Promise<TrustedChain> };

  constructor(private readonly authority: CertificateAuthority) {}

  get(now: number): Promise<TrustedChain> {
    if (this.#cached === undefined || now - this.#cached.at > CHAIN_REUSE_MS) {
      const read = this.authority.trustedChain();
      this.#cached = { at: now, read };
      // A failed read (sealed Vault) is not kept: the next step asks again.
      read.catch(() => {
        if (this.#cached?.read === read) this.#cached = undefined;
      });
    }
    return this.#cached.read;
  }
}
