import { readFileSync } from 'node:fs';
import { ValidationError } from '../errors';
import { describePattern, matchesPattern, PATTERNS, type PatternName } from '../patterns';

interface ParameterSpec {
  pattern: PatternName;
  description: string;
  default?: string;
}

const fileParameters = (file: string, label: string, key = false): Record<string, ParameterSpec> => ({
  [`${file}Path`]: { pattern: 'absolutePath', description: `Path of ${label}` },
  [`${file}Mode`]: { pattern: key ? 'keyFileMode' : 'fileMode', description: `Octal mode of ${label}` },
  [`${file}Owner`]: { pattern: 'posixName', description: `Owner of ${label}` },
  [`${file}Group`]: { pattern: 'posixName', description: `Group of ${label}` },
});

/** How a document reaches the node's own agent, which the SSM agent's bare environment does not say. */
const localAgent = {
  nomadAddress: {
    pattern: 'httpsUrl',
    description: "The local agent's HTTPS address (the SSM agent sets no NOMAD_ADDR)",
    default: 'https://127.0.0.1:4646',
  },
  verifyHttpsClient: {
    pattern: 'boolean',
    description: "The agent's tls.verify_https_client: call it with the CLI certificate when true",
    default: 'true',
  },
} as const satisfies Record<string, ParameterSpec>;

const executionTimeout: ParameterSpec = {
  pattern: 'seconds',
  description: 'Seconds before the agent stops the script (SIGKILL to its process group: no cleanup runs)',
  default: '900',
};

/**
 * SSM refuses a document whose content plus runtime parameters exceed 64 KB
 * (MaxDocumentSizeExceeded). How the service measures it is undocumented, so we count the whole
 * document as deployed (JSON, script included) plus every parameter name and value, and keep a
 * margin under the limit.
 */
export const DOCUMENT_SIZE_LIMIT_BYTES = 64 * 1024;
const DOCUMENT_SIZE_MARGIN_BYTES = 2 * 1024;
export const DOCUMENT_SIZE_BUDGET_BYTES = DOCUMENT_SIZE_LIMIT_BYTES - DOCUMENT_SIZE_MARGIN_BYTES;

/** The node-side documents. Every parameter has an allowedPattern; the code checks the same ones. */
export const DOCUMENTS = {
  prepare: {
    description: 'nomad-rotator: generate a fresh key and CSR for the agent and CLI certificates on the node',
    parameters: {
      attemptId: { pattern: 'attemptId', description: 'Identifies this rotation attempt' },
      keyType: { pattern: 'keyType', description: 'Key algorithm', default: 'ec-p256' },
      agentKeyPath: { pattern: 'absolutePath', description: 'Path of the agent private key' },
      agentCertPath: { pattern: 'absolutePath', description: 'Path of the agent certificate' },
      cliKeyPath: { pattern: 'absolutePath', description: 'Path of the CLI private key' },
      cliCertPath: { pattern: 'absolutePath', description: 'Path of the CLI certificate' },
      executionTimeout,
    },
  },
  install: {
    description:
      'nomad-rotator: verify, atomically install and prove the agent and CLI certificates, rolling back on failure',
    parameters: {
      attemptId: { pattern: 'attemptId', description: 'Identifies this rotation attempt' },
      cluster: {
        pattern: 'clusterName',
        description: "The nodes' cluster: picks the root CAs this document accepts for them",
      },
      role: { pattern: 'role', description: 'Nomad role of the nodes in this batch' },
      region: { pattern: 'region', description: 'Nomad region' },
      mode: { pattern: 'reloadMode', description: 'reload (SIGHUP) or restart', default: 'reload' },
      certificates: {
        pattern: 'base64Payload',
        description: 'Base64 of the gzip of the PEM leaf certificates of every node in the batch',
      },
      chain: {
        pattern: 'base64Payload',
        description: 'Base64 PEM intermediate chain appended to the leaves',
      },
      caBundle: { pattern: 'base64Payload', description: 'Base64 PEM trust bundle for ca_file' },
      minimumValiditySeconds: { pattern: 'seconds', description: 'Refuse certificates expiring sooner' },
      healthTimeoutSeconds: { pattern: 'seconds', description: 'Seconds to wait for the proof of reload' },
      settleSeconds: {
        pattern: 'seconds',
        description: 'Seconds the same agent process must keep running after it serves the new certificate',
        default: '3',
      },
      ...localAgent,
      ...fileParameters('agentCert', 'the agent certificate (leaf + chain)'),
      ...fileParameters('agentKey', 'the agent private key', true),
      ...fileParameters('ca', 'the CA bundle'),
      ...fileParameters('cliCert', 'the CLI certificate'),
      ...fileParameters('cliKey', 'the CLI private key', true),
      executionTimeout,
    },
  },
  gossip: {
    description:
      "nomad-rotator: one step of a gossip key rotation on a Nomad server (the key read with the instance role), then the server's keyring by fingerprint",
    parameters: {
      attemptId: { pattern: 'attemptId', description: 'Identifies this rotation attempt' },
      operation: {
        pattern: 'gossipOperation',
        description: 'inspect, install, use, remove, discard, repair, restart, enable or persist',
      },
      secretId: { pattern: 'secretId', description: "The cluster's gossip key secret", default: 'none' },
      versionId: {
        pattern: 'gossipVersionId',
        description: 'The secret version holding the key to install or persist',
        default: 'none',
      },
      keyFingerprint: {
        pattern: 'gossipFingerprint',
        description: 'The key this step installs, uses, keeps (remove), discards or persists, by fingerprint',
        default: 'none',
      },
      tokenSecretId: {
        pattern: 'secretId',
        description: 'A secret holding a Nomad ACL token with agent:write, or none without ACLs',
        default: 'none',
      },
      ...localAgent,
      caPath: { pattern: 'absolutePath', description: 'Path of the CA bundle' },
      cliCertPath: { pattern: 'absolutePath', description: 'Path of the CLI certificate' },
      cliKeyPath: { pattern: 'absolutePath', description: 'Path of the CLI private key' },
      keyringPath: { pattern: 'absolutePath', description: "The server's serf.keyring in its data dir" },
      encryptConfigPath: {
        pattern: 'absolutePath',
        description: 'The 0600 config file persist writes `encrypt` into',
      },
      encryptConfigOwner: { pattern: 'posixName', description: 'Owner of the encrypt config file' },
      expectedServers: {
        pattern: 'serverCount',
        description: 'Servers a repaired or restarted server must see alive again, and before a restart',
        default: '1',
      },
      healthTimeoutSeconds: {
        pattern: 'seconds',
        description: 'Seconds a repaired or restarted server has to rejoin and stay stable',
        default: '120',
      },
      stabilizationSeconds: {
        pattern: 'seconds',
        description: 'Seconds the gate must hold without a break after a repair, restart or enable',
        default: '10',
      },
      lastServer: {
        pattern: 'boolean',
        description: 'enable: the last server of the cluster to come up encrypted (the full gate after it)',
        default: 'false',
      },
      restoreCleanup: {
        pattern: 'boolean',
        description: "enable: turn autopilot's dead-server cleanup back on after the last server",
        default: 'false',
      },
      executionTimeout: { ...executionTimeout, default: '300' },
    },
  },
} as const satisfies Record<string, { description: string; parameters: Record<string, ParameterSpec> }>;

export type DocumentKind = keyof typeof DOCUMENTS;
export type DocumentParameters<Kind extends DocumentKind> = Record<
  Exclude<keyof (typeof DOCUMENTS)[Kind]['parameters'], 'executionTimeout'>,
  string
> & { executionTimeout?: string };

/** An SSM Command document, schema 2.2, as CDK deploys it and the local SSM emulator runs it. */
export interface CommandDocument {
  schemaVersion: '2.2';
  description: string;
  parameters: Record<
    string,
    { type: 'String'; description: string; allowedPattern: string; default?: string }
  >;
  mainSteps: [
    {
      action: 'aws:runShellScript';
      name: string;
      precondition: { StringEquals: ['platformType', 'Linux'] };
      inputs: { timeoutSeconds: string; runCommand: string[] };
    },
  ];
}

const INCLUDE = /^# nomad-rotator:include ([a-z-]+\.sh)$/m;
const TRUSTED_ROOTS_LINE = /^declare -A TRUSTED_ROOTS=\(\) # nomad-rotator:trusted-roots$/m;

/**
 * Bytes the install document keeps for its table of trusted roots, so that the 64 KB budget, which
 * the code checks for one cluster at a time, holds for a stack of many: about 55 fingerprints.
 */
export const TRUSTED_ROOTS_RESERVE_BYTES = 4096;

/** What the install document needs of each cluster of the stack: its name and the roots its nodes accept. */
export interface ClusterTrustAnchors {
  name: string;
  certificates: { trustedRootFingerprints: readonly string[] };
}

function readScript(name: string): string {
  return readFileSync(new URL(`./scripts/${name}`, import.meta.url), 'utf8');
}

/**
 * A document's script as the agent runs it, its placeholders unfilled: the shared helpers included
 * and the comment lines left out, since every byte of the document counts against SSM's 64 KB. The
 * scripts hold no here-document or multi-line string, where a line starting with # would be text.
 */
export function scriptText(kind: DocumentKind): string {
  return readScript(`${kind}.sh`)
    .replace(INCLUDE, (_, name: string) => readScript(name).trimEnd())
    .split('\n')
    .filter((line, index) => index === 0 || !/^\s*#/.test(line))
    .join('\n');
}

/**
 * The bash table cluster name → accepted root fingerprints. Names and fingerprints are checked
 * against their patterns here too: they become shell text, and no parameter check covers them.
 */
export function trustedRootsTable(clusters: readonly ClusterTrustAnchors[]): string {
  const issues: string[] = [];
  if (clusters.length === 0)
    issues.push('clusters: at least one cluster is needed to build the install document');
  const seen = new Set<string>();
  const entries = clusters.map((cluster, index) => {
    if (!matchesPattern('clusterName', cluster.name))
      issues.push(`clusters[${index}].name: ${describePattern('clusterName')}`);
    if (seen.has(cluster.name)) issues.push(`clusters[${index}].name: duplicate cluster name`);
    seen.add(cluster.name);
    const fingerprints = cluster.certificates.trustedRootFingerprints;
    if (fingerprints.length === 0)
      issues.push(`clusters[${index}].certificates.trustedRootFingerprints: must name at least one root`);
    fingerprints.forEach((fingerprint, position) => {
      if (!matchesPattern('sha256Fingerprint', fingerprint))
        issues.push(
          `clusters[${index}].certificates.trustedRootFingerprints[${position}]: ${describePattern('sha256Fingerprint')}`,
        );
    });
    return `['${cluster.name}']='${fingerprints.join(' ')}'`;
  });
  const table = `declare -A TRUSTED_ROOTS=(${entries.join(' ')})`;
  if (Buffer.byteLength(table) > TRUSTED_ROOTS_RESERVE_BYTES)
    issues.push(
      `clusters: the trusted root fingerprints of all clusters take ${Buffer.byteLength(table)} bytes of the install document; at most ${TRUSTED_ROOTS_RESERVE_BYTES} allowed`,
    );
  if (issues.length > 0) throw new ValidationError('invalid trust anchors for the install document', issues);
  return table;
}

/**
 * The document as the stack deploys it. The install document carries every cluster's accepted roots
 * in its script; the prepare document needs none and is the same for any clusters.
 */
export function commandDocument(
  kind: DocumentKind,
  clusters: readonly ClusterTrustAnchors[],
): CommandDocument {
  const script = scriptText(kind);
  return buildDocument(
    kind,
    kind === 'install' ? script.replace(TRUSTED_ROOTS_LINE, trustedRootsTable(clusters)) : script,
  );
}

function buildDocument(kind: DocumentKind, script: string): CommandDocument {
  const spec = DOCUMENTS[kind];
  const parameters: CommandDocument['parameters'] = {};
  for (const [name, parameter] of Object.entries(spec.parameters) as [string, ParameterSpec][]) {
    parameters[name] = {
      type: 'String',
      description: parameter.description,
      allowedPattern: PATTERNS[parameter.pattern],
      ...(parameter.default === undefined ? {} : { default: parameter.default }),
    };
  }
  return {
    schemaVersion: '2.2',
    description: spec.description,
    parameters,
    mainSteps: [
      {
        action: 'aws:runShellScript',
        name: kind,
        precondition: { StringEquals: ['platformType', 'Linux'] },
        inputs: { timeoutSeconds: '{{ executionTimeout }}', runCommand: script.split('\n') },
      },
    ],
  };
}

/**
 * Check parameters against the document's patterns before anything is sent, so a bad value is refused
 * here with a clear message instead of by SSM (and never reaches a shell). Values are never echoed.
 */
export function validateDocumentParameters<Kind extends DocumentKind>(
  kind: Kind,
  parameters: DocumentParameters<Kind>,
): Record<string, [string]> {
  const spec = DOCUMENTS[kind].parameters as Record<string, ParameterSpec>;
  const issues: string[] = [];
  const values = parameters as Record<string, string | undefined>;
  for (const name of Object.keys(values)) {
    if (!(name in spec)) issues.push(`${name}: unknown parameter of the ${kind} document`);
  }
  const result: Record<string, [string]> = {};
  for (const [name, parameter] of Object.entries(spec)) {
    const value = values[name] ?? parameter.default;
    if (value === undefined) {
      issues.push(`${name}: required`);
    } else if (!matchesPattern(parameter.pattern, value)) {
      issues.push(`${name}: ${describePattern(parameter.pattern)}`);
    } else {
      result[name] = [value];
    }
  }
  if (issues.length === 0) {
    const size = documentSizeBytes(kind, result);
    if (size > DOCUMENT_SIZE_BUDGET_BYTES)
      issues.push(
        `parameters: document plus parameters come to ${size} bytes; at most ${DOCUMENT_SIZE_BUDGET_BYTES} allowed (SSM's limit is ${DOCUMENT_SIZE_LIMIT_BYTES})`,
      );
  }
  if (issues.length > 0) throw new ValidationError(`invalid ${kind} command parameters`, issues);
  return result;
}

const documentBytes = new Map<DocumentKind, number>();

/**
 * The document as deployed plus every runtime parameter, in bytes: what the 64 KB limit counts. The
 * install's table of trusted roots counts at its reserve, whatever clusters the stack holds.
 */
export function documentSizeBytes(kind: DocumentKind, parameters: Record<string, readonly string[]>): number {
  let base = documentBytes.get(kind);
  if (base === undefined) {
    base =
      Buffer.byteLength(JSON.stringify(buildDocument(kind, scriptText(kind)))) +
      (kind === 'install' ? TRUSTED_ROOTS_RESERVE_BYTES : 0);
    documentBytes.set(kind, base);
  }
  return base + Buffer.byteLength(JSON.stringify(parameters));
}

/** Slack the agent needs besides the waits: key checks, backups, writes, the signal, one JSON line. */
const INSTALL_WORK_SECONDS = 120;

/**
 * The install's executionTimeout. The agent SIGKILLs the script's process group when it runs out (no
 * EXIT trap runs), so the worst case must fit: the proof (health timeout plus the settle interval),
 * and after a failed proof the rollback and its own proof (the same again).
 */
export function installExecutionTimeoutSeconds(healthTimeoutSeconds: number, settleSeconds: number): number {
  return 2 * (healthTimeoutSeconds + settleSeconds) + INSTALL_WORK_SECONDS;
}
