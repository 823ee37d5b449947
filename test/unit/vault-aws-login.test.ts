import { describe, expect, it } from 'vitest';
import { buildIamLoginData } from '../../shared/vault/aws-login';

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
