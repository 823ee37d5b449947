import type { CommandDocument } from '../../shared/documents';
import { AwsServiceError, type Operation } from './json-protocol';

const PARAMETER_NAME = /^\/?[a-zA-Z0-9_.\-/]{1,1011}$/;
const ADVANCED_VALUE_BYTES = 8192;
const PARAMETERS_PAGE = 10;

/**
 * What SSM keeps beside Run Command: the documents' versions (GetDocument answers the default one,
 * the latest here, as `updateMethod: NewVersion` leaves it) and String parameters (Parameter Store),
 * with the service's names, size limit and paging.
 */
export function ssmCatalog(documents: Map<string, CommandDocument>) {
  const versions = new Map<string, number>();
  const parameters = new Map<string, { value: string; version: number }>();

  const getDocument = (input: Record<string, unknown>) => {
    const name = String(input.Name ?? '');
    const document = documents.get(name);
    if (document === undefined)
      throw new AwsServiceError('InvalidDocument', `Document ${name} does not exist`);
    if (input.DocumentFormat !== undefined && input.DocumentFormat !== 'JSON')
      throw new AwsServiceError('InvalidDocumentOperation', 'only JSON is served here');
    return {
      Name: name,
      DocumentVersion: String(versions.get(name) ?? 1),
      Status: 'Active',
      Content: JSON.stringify(document),
      DocumentType: 'Command',
      DocumentFormat: 'JSON',
    };
  };

  const putParameter = (input: Record<string, unknown>) => {
    const name = String(input.Name ?? '');
    const value = input.Value;
    if (!PARAMETER_NAME.test(name))
      throw new AwsServiceError('ValidationException', `Invalid parameter name ${name}`);
    if (typeof value !== 'string' || Buffer.byteLength(value) > ADVANCED_VALUE_BYTES)
      throw new AwsServiceError('ParameterMaxVersionLimitExceeded', 'Value is missing or over 8 KB');
    if ((input.Type ?? 'String') !== 'String')
      throw new AwsServiceError('UnsupportedParameterType', 'only String parameters are kept here');
    const existing = parameters.get(name);
    if (existing !== undefined && input.Overwrite !== true)
      throw new AwsServiceError('ParameterAlreadyExists', 'The parameter already exists.');
    const version = (existing?.version ?? 0) + 1;
    parameters.set(name, { value, version });
    return { Version: version, Tier: Buffer.byteLength(value) > 4096 ? 'Advanced' : 'Standard' };
  };

  const described = (name: string, { value, version }: { value: string; version: number }) => ({
    Name: name,
    Type: 'String',
    Value: value,
    Version: version,
    DataType: 'text',
  });

  const getParameter = (input: Record<string, unknown>) => {
    const name = String(input.Name ?? '');
    const parameter = parameters.get(name);
    if (parameter === undefined)
      throw new AwsServiceError('ParameterNotFound', `Parameter ${name} not found.`);
    return { Parameter: described(name, parameter) };
  };

  /** One level below Path unless Recursive, as SSM does. */
  const getParametersByPath = (input: Record<string, unknown>) => {
    const path = String(input.Path ?? '').replace(/\/$/, '');
    if (!path.startsWith('/')) throw new AwsServiceError('ValidationException', 'Path must start with /');
    const matching = [...parameters.entries()]
      .filter(([name]) => {
        if (!name.startsWith(`${path}/`)) return false;
        return input.Recursive === true || !name.slice(path.length + 1).includes('/');
      })
      .sort(([a], [b]) => a.localeCompare(b));
    const start = Number(input.NextToken ?? 0);
    const page = matching.slice(start, start + PARAMETERS_PAGE);
    return {
      Parameters: page.map(([name, parameter]) => described(name, parameter)),
      ...(start + PARAMETERS_PAGE < matching.length ? { NextToken: String(start + PARAMETERS_PAGE) } : {}),
    };
  };

  return {
    operations: {
      GetDocument: getDocument,
      PutParameter: putParameter,
      GetParameter: getParameter,
      GetParametersByPath: getParametersByPath,
    } satisfies Record<string, Operation>,
    /** A new version of the document becomes its default, as an update by the stack does. */
    register(name: string, document: CommandDocument): void {
      documents.set(name, document);
      versions.set(name, (versions.get(name) ?? 0) + 1);
    },
  };
}
