import { readFileSync } from 'node:fs';
import { ValidationError } from '../errors';
import { matchesPattern, PATTERNS, type PatternName } from '../patterns';

interface ParameterSpec {
  pattern: PatternName;
  description: string;
  default?: string;
}

const fileParameters = (file: string, label: string): Record<string, ParameterSpec> => ({
  [`${file}Path`]: { pattern: 'absolutePath', description: `Path of ${label}` },
  [`${file}Mode`]: { pattern: 'fileMode', description: `Octal mode of ${label}` },
  [`${file}Owner`]: { pattern: 'posixName', description: `Owner of ${label}` },
  [`${file}Group`]: { pattern: 'posixName', description: `Group of ${label}` },
});

const executionTimeout: ParameterSpec = {
  pattern: 'seconds',
  description: 'Seconds before the agent stops the script',
  default: '900',
};

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
      role: { pattern: 'role', description: 'Nomad role of the nodes in this batch' },
      region: { pattern: 'region', description: 'Nomad region' },
      mode: { pattern: 'reloadMode', description: 'reload (SIGHUP) or restart', default: 'reload' },
      certificates: {
        pattern: 'base64Payload',
        description: 'Base64 PEM leaf certificates of every node in the batch',
      },
      chain: {
        pattern: 'base64Payload',
        description: 'Base64 PEM intermediate chain appended to the leaves',
      },
      caBundle: { pattern: 'base64Payload', description: 'Base64 PEM trust bundle for ca_file' },
      minimumValiditySeconds: { pattern: 'seconds', description: 'Refuse certificates expiring sooner' },
      healthTimeoutSeconds: { pattern: 'seconds', description: 'Seconds to wait for the proof of reload' },
      ...fileParameters('agentCert', 'the agent certificate (leaf + chain)'),
      ...fileParameters('agentKey', 'the agent private key'),
      ...fileParameters('ca', 'the CA bundle'),
      ...fileParameters('cliCert', 'the CLI certificate'),
      ...fileParameters('cliKey', 'the CLI private key'),
      executionTimeout,
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

export function scriptText(kind: DocumentKind): string {
  return readFileSync(new URL(`./scripts/${kind}.sh`, import.meta.url), 'utf8');
}

export function commandDocument(kind: DocumentKind): CommandDocument {
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
        inputs: { timeoutSeconds: '{{ executionTimeout }}', runCommand: scriptText(kind).split('\n') },
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
      issues.push(`${name}: must match ${PATTERNS[parameter.pattern]}`);
    } else {
      result[name] = [value];
    }
  }
  if (issues.length > 0) throw new ValidationError(`invalid ${kind} command parameters`, issues);
  return result;
}
