import { describe, expect, it } from 'vitest';
import { parseClusterConfig } from '../../shared/config';
import { commandDocument } from '../../shared/documents';
import { doctorChecks } from '../../shared/preflight/checks';
import type { Deployment } from '../../shared/preflight/deployment';
import { TokenUnreadableError, type VaultProbe } from '../../shared/preflight/ports';
import { runChecks } from '../../shared/preflight/report';
import { MINIMAL_CLUSTER } from '../helpers/cluster-config';

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 6);
const cluster = parseClusterConfig({ ...MINIMAL_CLUSTER, name: 'unit' });
const deployment: Deployment = {
  documents: { prepare: 'P', install: 'I', gossip: 'G' },
  tickSchedule: { name: 'Tick', group: 'default' },
  eventRules: ['Rule'],
  deadLetterQueues: { dlq: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dlq' },
  alarmNamePrefix: 'NomadRotator-',
};
const healthyVault: VaultProbe = {
  health: async () => ({ initialized: true, sealed: false, standby: false }),
  tokenTtlSeconds: async () => 20 * 3600,
  capabilities: async (paths) => Object.fromEntries(paths.map((path) => [path, ['update']])),
  issuerNotAfter: async () => NOW + 365 * DAY,
};

/** The doctor's verdicts with every dependency healthy but the Vault probe given. */
async function verdicts(vault: Partial<VaultProbe>) {
  const results = await runChecks(
    doctorChecks({
      cluster: 'unit',
      configuration: { clusters: [cluster], deployment },
      vault: () => ({ ...healthyVault, ...vault }),
      documents: {
        get: async (name) => {
          const kind = ({ P: 'prepare', I: 'install', G: 'gossip' } as const)[name as 'P' | 'I' | 'G'];
          return { content: commandDocument(kind, [cluster]), version: '1', status: 'Active' };
        },
      },
      nodes: {
        list: async () => [
          { instanceId: 'i-0123456789abcdef0', role: 'server', ip: '10.0.0.4', online: true },
        ],
      },
      triggers: { schedule: async () => 'ENABLED', rule: async () => 'ENABLED' },
      alarms: { inAlarm: async () => [] },
      queues: { depth: async () => 0 },
      now: () => NOW,
    }),
    1_000,
  );
  return Object.fromEntries(results.map(({ check, ...rest }) => [check, rest]));
}

describe('doctor checks: Vault token and issuing CA', () => {
  it('is ok with a valid token and a CA far from its end', async () => {
    const results = await verdicts({});
    expect(Object.values(results).map(({ status }) => status)).toEqual(Array(9).fill('ok'));
    expect(results['vault-ca']?.detail).toMatch(/365\.0 days left \(warns under 30\)/);
  });

  it('warns when the issuing CA is inside the alarm threshold, fails once it has expired', async () => {
    const soon = await verdicts({ issuerNotAfter: async () => NOW + 10 * DAY });
    expect(soon['vault-ca']).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(/expires in 10\.0 days/),
    });
    expect(soon['vault-ca']?.action).toMatch(/new intermediate.*reissue/);

    const expired = await verdicts({ issuerNotAfter: async () => NOW - DAY });
    expect(expired['vault-ca']).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/has expired/),
    });
  });

  it('fails a token without update on a sign path, naming it; warns when its TTL runs low', async () => {
    const missing = await verdicts({
      capabilities: async (paths) =>
        Object.fromEntries(
          paths.map((path) => [
            path,
            path.endsWith(`/sign/${cluster.vault.cliRole}`) ? ['read'] : ['update'],
          ]),
        ),
    });
    expect(missing['vault-token']?.status).toBe('fail');
    expect(missing['vault-token']?.detail).toBe(
      `the rotator's token lacks update on ${cluster.vault.pkiMount}/sign/${cluster.vault.cliRole}`,
    );

    const low = await verdicts({ tokenTtlSeconds: async () => 3600 });
    expect(low['vault-token']).toMatchObject({ status: 'warn', detail: expect.stringMatching(/1\.0h left/) });
  });

  it('warns, not fails, when the caller may not read the rotator’s token (an operator role on AWS)', async () => {
    const denied = async () => {
      throw new TokenUnreadableError('the token secret NomadRotator/unit/vault-token refuses this identity');
    };
    const results = await verdicts({ tokenTtlSeconds: denied, capabilities: denied });
    expect(results['vault-token']).toMatchObject({
      status: 'warn',
      detail: expect.stringMatching(/^not checked: the token secret .* refuses this identity/),
      action: expect.stringMatching(/TokenRotationFailed/),
    });
  });

  it('fails the Vault check with the error, never the other checks, when Vault does not answer', async () => {
    const results = await verdicts({
      health: async () => {
        throw new Error('VaultUnavailableError: Vault health check failed');
      },
    });
    expect(results.vault).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/no verified TLS answer/),
    });
    expect(results.documents?.status).toBe('ok');
  });
});
