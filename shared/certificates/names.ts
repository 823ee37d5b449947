import type { ClusterConfig } from '../config';

export type NodeRole = 'server' | 'client';
export type CertificateKind = NodeRole | 'cli';

export interface CertificateNames {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
}

/**
 * The names we sign, decided here and never taken from the CSR. Nomad verifies peers by the DNS SAN
 * `<role>.<region>.nomad` (Go ignores the CN), and `localhost` / `127.0.0.1` let the local CLI and
 * health checks reach the agent. Only servers get their node IP and any configured extras: they are
 * the ones dialled by address.
 */
export function certificateNames(
  kind: CertificateKind,
  cluster: {
    region: string;
    certificates: Pick<ClusterConfig['certificates'], 'serverExtraDnsSans' | 'serverExtraIpSans'>;
  },
  nodeIp?: string,
): CertificateNames {
  const commonName = `${kind}.${cluster.region}.nomad`;
  switch (kind) {
    case 'server':
      return {
        commonName,
        dnsNames: unique([commonName, 'localhost', ...cluster.certificates.serverExtraDnsSans]),
        ipAddresses: unique([
          '127.0.0.1',
          ...(nodeIp ? [nodeIp] : []),
          ...cluster.certificates.serverExtraIpSans,
        ]),
      };
    case 'client':
      return { commonName, dnsNames: [commonName, 'localhost'], ipAddresses: ['127.0.0.1'] };
    case 'cli':
      return { commonName, dnsNames: [commonName], ipAddresses: [] };
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
