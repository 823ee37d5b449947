import { readFileSync } from 'node:fs';
import { bootstrapVault } from '../../ops/vault-bootstrap/apply';
import { renderBootstrapReport } from '../../ops/vault-bootstrap/report';
import { parseClustersConfig } from '../../shared/config';
import { stripControlCharacters } from '../../shared/terminal-text';
import { VaultClient } from '../../shared/vault/client';
import { optionalString, required } from '../args';
import type { Command } from '../context';

export const vaultBootstrapCommand: Command = {
  name: 'vault-bootstrap',
  summary: 'set Vault up idempotently (VAULT_ADDR, VAULT_TOKEN); no --cluster',
  description:
    'Creates or updates the PKI mounts, roles, policies and auth the rotator needs, and prints\n' +
    'created/updated/unchanged and the policy HCL. With --clusters (the deployed clusters file) it\n' +
    'refuses before writing anything if the roles would refuse those clusters.',
  options: {
    spec: { type: 'string', value: 'FILE', description: 'the bootstrap spec (JSON)' },
    clusters: { type: 'string', value: 'FILE', description: 'the deployed clusters file, checked first' },
    'dry-run': { type: 'boolean', description: 'say what would change, change nothing' },
    'vault-ca': { type: 'string', value: 'FILE', description: "Vault's CA bundle (PEM)" },
  },
  examples: [
    'VAULT_ADDR=https://vault:8200 VAULT_TOKEN=… nomad-rotator vault-bootstrap --spec spec.json --dry-run',
  ],
  async run(values, context) {
    const spec: unknown = JSON.parse(
      readFileSync(required(optionalString(values, 'spec'), '--spec', 'the bootstrap spec file'), 'utf8'),
    );
    const caFile = optionalString(values, 'vault-ca');
    const vault = new VaultClient({
      address: required(context.environment.VAULT_ADDR, 'VAULT_ADDR', "Vault's address"),
      timeoutMs: 10_000,
      ...(caFile ? { caBundlePem: readFileSync(caFile, 'utf8') } : {}),
    });
    const clustersFile = optionalString(values, 'clusters');
    const clusters = clustersFile
      ? parseClustersConfig(JSON.parse(readFileSync(clustersFile, 'utf8')))
      : undefined;
    const report = await bootstrapVault(
      vault,
      required(context.environment.VAULT_TOKEN, 'VAULT_TOKEN', 'a Vault token allowed to configure it'),
      spec,
      { dryRun: values['dry-run'] === true, ...(clusters ? { clusters } : {}) },
    );
    const text = stripControlCharacters(renderBootstrapReport(report));
    context.out.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : `${text}\n`);
    return 0;
  },
};
