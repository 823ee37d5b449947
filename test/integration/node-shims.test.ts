import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';

// The `nomad` and `aws` shims against a recording endpoint instead of the emulators, to see exactly
// what they send, and that a refused command sends nothing at all.

interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let baseDir: string;
let fleet: NodeFleet;
let node: NodeSandbox;
let endpoint: Server;
let endpointUrl: string;
const recorded: Recorded[] = [];
let commands = 0;

const SECRET_RESPONSE = {
  ARN: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:gossip-AbCdEf',
  Name: 'gossip',
  VersionId: '01234567-89ab-cdef-0123-456789abcdef',
  SecretString: 'the-value',
  VersionStages: ['AWSPENDING'],
  CreatedDate: 1_700_000_000.5,
};

const shell = (script: string) => {
  commands += 1;
  return node.runScript({ script, commandId: `shim-${commands}`, timeoutSeconds: 30 });
};

beforeAll(async () => {
  endpoint = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      recorded.push({
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify(request.url === '/' ? SECRET_RESPONSE : { Messages: {}, Keys: {}, NumNodes: 3 }),
      );
    });
  });
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  endpointUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
  baseDir = await mkdtemp(join(tmpdir(), 'node-shims-'));
  fleet = await createNodeFleet({
    baseDir,
    servers: 1,
    clients: 0,
    clusterName: 'shims',
    secretsManagerEndpoint: endpointUrl,
  });
  node = fleet.nodes()[0]!;
});

afterAll(async () => {
  await fleet?.stop();
  endpoint?.closeAllConnections();
  await new Promise((resolve) => endpoint?.close(resolve));
  await rm(baseDir, { recursive: true, force: true });
});

describe('node shims', () => {
  it('aws signs GetSecretValue with SigV4 exactly as the SDK would, with the instance credentials', async () => {
    const env = Object.fromEntries(
      (await readFile(join(node.root, 'shims/node.env'), 'utf8'))
        .trim()
        .split('\n')
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    recorded.length = 0;

    const result = await shell(
      'aws secretsmanager get-secret-value --secret-id gossip --version-stage AWSPENDING --query SecretString --output text',
    );

    expect(result).toMatchObject({ exitCode: 0, stdout: 'the-value\n' });
    expect(recorded).toHaveLength(1);
    const [sent] = recorded as [Recorded];
    expect(sent).toMatchObject({ method: 'POST', url: '/' });
    expect(JSON.parse(sent.body)).toEqual({ SecretId: 'gossip', VersionStage: 'AWSPENDING' });
    expect(sent.headers['x-amz-target']).toBe('secretsmanager.GetSecretValue');
    const amzDate = String(sent.headers['x-amz-date']);
    const signingDate = new Date(
      `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13)}`,
    );
    const signer = new SignatureV4({
      credentials: {
        accessKeyId: env.INSTANCE_ACCESS_KEY_ID!,
        secretAccessKey: env.INSTANCE_SECRET_ACCESS_KEY!,
        sessionToken: env.INSTANCE_SESSION_TOKEN!,
      },
      region: 'us-east-1',
      service: 'secretsmanager',
      sha256: Sha256,
      applyChecksum: false,
    });
    const expected = await signer.sign(
      new HttpRequest({
        method: 'POST',
        protocol: 'http:',
        hostname: '127.0.0.1',
        port: Number(new URL(endpointUrl).port),
        path: '/',
        headers: {
          host: new URL(endpointUrl).host,
          'content-type': 'application/x-amz-json-1.1',
          'x-amz-target': 'secretsmanager.GetSecretValue',
        },
        body: sent.body,
      }),
      { signingDate },
    );
    expect(sent.headers.authorization).toBe(expected.headers.authorization);
    expect(sent.headers['x-amz-security-token']).toBe(env.INSTANCE_SESSION_TOKEN);
  });

  it('aws prints the whole answer as the CLI does: four-space JSON, ISO 8601 timestamps', async () => {
    const result = await shell('aws secretsmanager get-secret-value --secret-id gossip');

    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(
      `${JSON.stringify({ ...SECRET_RESPONSE, CreatedDate: '2023-11-14T22:13:20.500000+00:00' }, null, 4)}\n`,
    );
  });

  it('nomad sends a keyring change as Nomad’s API client does: PUT with the key in a JSON body', async () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    recorded.length = 0;

    const result = await shell(`nomad operator gossip keyring install -address=${endpointUrl} ${key}`);

    expect(result).toMatchObject({
      exitCode: 0,
      stdout: 'Installing new gossip encryption key...\n',
      stderr: '',
    });
    expect(recorded).toMatchObject([{ method: 'PUT', url: '/v1/agent/keyring/install' }]);
    expect(JSON.parse(recorded[0]!.body)).toEqual({ Key: key });
  });

  it('nomad sends the ACL token as X-Nomad-Token, from NOMAD_TOKEN or -token (the flag wins)', async () => {
    const list = `nomad operator gossip keyring list -address=${endpointUrl}`;
    recorded.length = 0;

    const fromEnv = await shell(`NOMAD_TOKEN=env-secret ${list}`);
    const fromFlag = await shell(
      `NOMAD_TOKEN=env-secret nomad operator gossip keyring list -token flag-secret -address=${endpointUrl}`,
    );
    const without = await shell(list);

    expect([fromEnv.exitCode, fromFlag.exitCode, without.exitCode]).toEqual([0, 0, 0]);
    expect(recorded.map((request) => request.headers['x-nomad-token'])).toEqual([
      'env-secret',
      'flag-secret',
      undefined,
    ]);
  });

  it('nomad runs in the SSM agent’s bare environment: no HOME, from /usr/bin, no curl config read', async () => {
    const key = Buffer.alloc(32, 9).toString('base64');
    recorded.length = 0;

    const bare = await shell(
      `cd /usr/bin && env -i PATH="$PATH" nomad operator gossip keyring install -address=${endpointUrl} ${key}`,
    );
    const withCurlrc = await shell(
      [
        'home=$(mktemp -d)',
        `printf 'header = "X-Nomad-Token: from-curlrc"\n' >"$home/.curlrc"`,
        `HOME=$home nomad operator gossip keyring list -address=${endpointUrl}`,
      ].join('\n'),
    );
    const defaultAddress = await shell('env -u NOMAD_ADDR nomad operator gossip keyring list');

    expect(bare).toMatchObject({ exitCode: 0, stderr: '' });
    expect(withCurlrc).toMatchObject({ exitCode: 0, stderr: '' });
    expect(recorded).toMatchObject([
      { method: 'PUT', url: '/v1/agent/keyring/install' },
      { method: 'GET', url: '/v1/agent/keyring/list' },
    ]);
    expect(JSON.parse(recorded[0]!.body)).toEqual({ Key: key });
    expect(recorded[1]!.headers['x-nomad-token']).toBeUndefined();
    expect(defaultAddress.exitCode).toBe(1);
    expect(defaultAddress.stderr).toMatch(
      /^error: Get "http:\/\/127\.0\.0\.1:4646\/v1\/agent\/keyring\/list": /,
    );
  });

  it('refuses unsupported commands and malformed values without sending anything', async () => {
    const refusals: [string, number, string][] = [
      ['aws s3 ls', 252, "only 'aws secretsmanager get-secret-value'"],
      ['aws secretsmanager list-secrets', 252, "only 'aws secretsmanager get-secret-value'"],
      ['aws secretsmanager get-secret-value', 252, '--secret-id'],
      ["aws secretsmanager get-secret-value --secret-id 'a;b'", 252, 'invalid --secret-id'],
      [
        'aws secretsmanager get-secret-value --secret-id a --version-stage "$(id)"',
        252,
        'invalid --version-stage',
      ],
      ['aws secretsmanager get-secret-value --secret-id a --query "x[0]"', 252, 'one top-level field'],
      [
        'aws secretsmanager get-secret-value --secret-id a --profile prod',
        252,
        'unsupported option --profile',
      ],
      ['nomad job status', 1, 'unsupported command'],
      ['nomad operator keyring -list', 1, "use 'nomad operator gossip keyring"],
      [`nomad operator gossip keyring install -address=${endpointUrl} 'k"}'`, 1, 'not standard base64'],
      [`nomad operator gossip keyring list -address=${endpointUrl} extra`, 1, 'takes no arguments'],
      [`nomad server members -address=${endpointUrl} -bogus`, 1, 'flag provided but not defined: -bogus'],
      [
        `nomad server members -address=${endpointUrl} -token="$(printf 'a\nX-Injected: b')"`,
        1,
        'the token contains a control character',
      ],
      ["nomad server members -address='https://x/$(id)'", 1, 'invalid address'],
      [`nomad server members -address=${endpointUrl} -ca-cert=/missing.pem`, 1, 'open /missing.pem'],
    ];
    recorded.length = 0;

    const results = [];
    for (const [script] of refusals) results.push(await shell(script));

    expect(results.map((result, index) => [refusals[index]![0], result.exitCode])).toEqual(
      refusals.map(([script, exitCode]) => [script, exitCode]),
    );
    results.forEach((result, index) => {
      expect(result.stderr).toContain(refusals[index]![2]);
    });
    expect(recorded).toEqual([]);
  });
});
