import { commandDocument, type DocumentKind } from '../../shared/documents';

/** The cluster the node tests' documents are built for and their installs name. */
export const TEST_CLUSTER = 'test';

/**
 * A document's script with parameters substituted, as SSM hands it to the agent. The install is
 * built, as the stack builds it, with the root fingerprints its cluster's nodes accept.
 */
export function renderDocument(
  kind: DocumentKind,
  parameters: Record<string, string>,
  trustedRootFingerprints: readonly string[] = [],
): string {
  const cluster = parameters.cluster ?? TEST_CLUSTER;
  const document = commandDocument(kind, [{ name: cluster, certificates: { trustedRootFingerprints } }]);
  const given: Record<string, string> = kind === 'install' ? { cluster, ...parameters } : parameters;
  const values = Object.fromEntries(
    Object.entries(document.parameters).map(([name, spec]) => [name, given[name] ?? spec.default ?? '']),
  );
  return document.mainSteps[0].inputs.runCommand
    .join('\n')
    .replace(/\{\{ *(\w+) *\}\}/g, (_, name: string) => values[name] ?? '');
}

export const DEFAULT_FILES: Record<string, string> = {
  agentCertPath: '/opt/nomad/agent-certs/agent.crt',
  agentCertMode: '0644',
  agentKeyPath: '/opt/nomad/agent-certs/agent.key',
  agentKeyMode: '0600',
  caPath: '/opt/nomad/agent-certs/ca.crt',
  caMode: '0644',
  cliCertPath: '/opt/nomad/cli-certs/cli.crt',
  cliCertMode: '0644',
  cliKeyPath: '/opt/nomad/cli-certs/cli.key',
  cliKeyMode: '0640',
  ...Object.fromEntries(
    ['agentCert', 'agentKey', 'ca', 'cliCert', 'cliKey'].flatMap((file) => [
      [`${file}Owner`, 'root'],
      [`${file}Group`, 'root'],
    ]),
  ),
};
