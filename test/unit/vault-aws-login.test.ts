import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { parseClusterConfig } from '../../shared/config';
import { ValidationError } from '../../shared/errors';
import { buildIamLoginData } from '../../shared/vault/aws-login';
import { testInventory } from '../helpers/inventory';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const credentials = async () => ({
  accessKeyId: 'ASIAEXAMPLEKEYID0001',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  sessionToken: 'session-token-of-the-lambda-role',
});

const decode = (text: string) => Buffer.from(text, 'base64').toString('utf8');

describe('AWS IAM login data', () => {
  it('signs sts:GetCallerIdentity for the global endpoint and base64-encodes url, body and headers', async () => {
    const data = await buildIamLoginData({ credentials, signingDate: new Date('2025-01-02T03:04:05Z') });

    expect(data.iam_http_request_method).toBe('POST');
    expect(decode(data.iam_request_url)).toBe('https://sts.amazonaws.com/');
    expect(decode(data.iam_request_body)).toBe('Action=GetCallerIdentity&Version=2011-06-15');
    const headers = JSON.parse(decode(data.iam_request_headers)) as Record<string, string[]>;
    expect(headers['X-Amz-Date']).toEqual(['20250102T030405Z']);
    expect(headers['X-Amz-Security-Token']).toEqual(['session-token-of-the-lambda-role']);
    expect(headers['Content-Type']).toEqual(['application/x-www-form-urlencoded; charset=utf-8']);
    expect(headers.Authorization?.[0]).toMatch(
      /^AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEYID0001\/20250102\/us-east-1\/sts\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/,
    );
    expect(Object.keys(headers)).not.toContain('Host');
    expect(headers['X-Vault-Aws-Iam-Server-Id']).toBeUndefined();
  });

  it('sends and signs the Vault server id header when one is configured', async () => {
    const data = await buildIamLoginData({ credentials, serverIdHeader: 'vault.example.internal' });

    const headers = JSON.parse(decode(data.iam_request_headers)) as Record<string, string[]>;
    expect(headers['X-Vault-Aws-Iam-Server-Id']).toEqual(['vault.example.internal']);
    expect(headers.Authorization?.[0]).toContain('x-vault-aws-iam-server-id');
  });

  it('never carries the secret access key', async () => {
    const data = await buildIamLoginData({ credentials });

    expect(JSON.stringify(data)).not.toContain('wJalrXUtnFEMI');
    expect(decode(data.iam_request_headers)).not.toContain('wJalrXUtnFEMI');
  });
});

describe('AWS IAM login data for other partitions', () => {
  const signingDate = new Date('2025-01-02T03:04:05Z');

  /** Sign the same request independently, for an expected host and region, to compare signatures. */
  async function signatureFor(host: string, region: string, headers: Record<string, string[]>) {
    const signed = await new SignatureV4({
      credentials,
      region,
      service: 'sts',
      sha256: Sha256,
      applyChecksum: false,
    }).sign(
      new HttpRequest({
        method: 'POST',
        protocol: 'https:',
        hostname: host,
        path: '/',
        headers: {
          host,
          'content-type': headers['Content-Type']![0]!,
        },
        body: 'Action=GetCallerIdentity&Version=2011-06-15',
      }),
      { signingDate },
    );
    return /Signature=([0-9a-f]{64})$/.exec(signed.headers.authorization!)?.[1];
  }

  it.each([
    ['aws-cn', 'https://sts.cn-north-1.amazonaws.com.cn', 'cn-north-1'],
    ['aws-us-gov', 'https://sts.us-gov-west-1.amazonaws.com', 'us-gov-west-1'],
    ['a regional aws endpoint', 'https://sts.eu-west-1.amazonaws.com', 'eu-west-1'],
  ])(
    'addresses and signs %s: host of the endpoint, region in the credential scope',
    async (_partition, endpoint, region) => {
      const data = await buildIamLoginData({ credentials, sts: { endpoint, region }, signingDate });

      const host = new URL(endpoint).hostname;
      expect(decode(data.iam_request_url)).toBe(`https://${host}/`);
      const headers = JSON.parse(decode(data.iam_request_headers)) as Record<string, string[]>;
      const authorization = headers.Authorization?.[0] ?? '';
      expect(authorization).toContain(`Credential=ASIAEXAMPLEKEYID0001/20250102/${region}/sts/aws4_request`);
      expect(authorization).toContain('SignedHeaders=content-type;host;');
      const signature = /Signature=([0-9a-f]{64})$/.exec(authorization)?.[1];
      expect(signature).toBe(await signatureFor(host, region, headers));
    },
  );

  it('refuses an endpoint and a region that disagree, before signing anything', async () => {
    await expect(
      buildIamLoginData({
        credentials,
        sts: { endpoint: 'https://sts.cn-north-1.amazonaws.com.cn', region: 'us-east-1' },
      }),
    ).rejects.toThrow(
      'STS endpoint https://sts.cn-north-1.amazonaws.com.cn is not signed for region us-east-1',
    );
  });
});

describe('tokenRotation.stsEndpoint and stsRegion', () => {
  const withTokenRotation = (tokenRotation: Record<string, unknown>) =>
    parseClusterConfig({
      name: 'prod',
      inventory: testInventory('prod'),
      certificates: UNCHECKED_TRUST_ANCHORS,
      vault: {
        address: 'https://vault.example.internal:8200',
        tokenSecretId: 'nomad/prod/vault-token',
        tokenRotation: { iamServerIdHeader: 'vault.example.internal', ...tokenRotation },
      },
    }).vault.tokenRotation;

  it('defaults to the global endpoint signed for us-east-1, and derives the region of a regional one', () => {
    expect(withTokenRotation({})).toMatchObject({
      stsEndpoint: 'https://sts.amazonaws.com',
      stsRegion: 'us-east-1',
    });
    expect(withTokenRotation({ stsEndpoint: 'https://sts.cn-north-1.amazonaws.com.cn' }).stsRegion).toBe(
      'cn-north-1',
    );
    expect(
      withTokenRotation({
        stsEndpoint: 'https://sts.us-gov-west-1.amazonaws.com',
        stsRegion: 'us-gov-west-1',
      }).stsRegion,
    ).toBe('us-gov-west-1');
  });

  it.each([
    [
      { stsEndpoint: 'https://sts.cn-north-1.amazonaws.com.cn', stsRegion: 'us-east-1' },
      'vault.tokenRotation.stsRegion: must be cn-north-1, the region of stsEndpoint https://sts.cn-north-1.amazonaws.com.cn',
    ],
    [
      { stsRegion: 'eu-west-1' },
      'vault.tokenRotation.stsRegion: must be us-east-1, the region of stsEndpoint https://sts.amazonaws.com',
    ],
    [
      { stsEndpoint: 'https://sts.amazonaws.com.cn' },
      'vault.tokenRotation.stsEndpoint: must be an STS endpoint: https://sts.amazonaws.com, https://sts.<region>.amazonaws.com',
    ],
    [{ stsEndpoint: 'https://sts.example.com' }, 'vault.tokenRotation.stsEndpoint: must be an STS endpoint'],
  ])('refuses %o at config parse, naming the field and what is allowed', (tokenRotation, message) => {
    expect(() => withTokenRotation(tokenRotation)).toThrow(ValidationError);
    expect(() => withTokenRotation(tokenRotation)).toThrow(message);
  });
});
