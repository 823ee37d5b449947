import { describe, expect, it } from 'vitest';
import { parseClusterConfig, parseClustersConfig } from '../../shared/config';
import { ValidationError } from '../../shared/errors';
import { MINIMAL_CLUSTER } from '../helpers/cluster-config';
import { UNCHECKED_TRUST_ANCHORS } from '../helpers/trust-anchors';

const minimal = MINIMAL_CLUSTER;

describe('cluster configuration', () => {
  it('refuses a gossip stabilization time a restarted server could never hold within its health timeout', () => {
    const refused = () =>
      parseClusterConfig({
        ...minimal,
        rollout: { serverHealthTimeoutSeconds: 30 },
        gossip: { secretId: 'nomad/prod/gossip', stabilizationSeconds: 30 },
      });

    expect(refused).toThrow(ValidationError);
    expect(refused).toThrow(
      /gossip\.stabilizationSeconds: must be less than rollout\.serverHealthTimeoutSeconds \(30\)/,
    );
  });

  it('leaves staged restarts after a gossip rotation off unless the cluster asks for them', () => {
    const gossip = parseClusterConfig({ ...minimal, gossip: { secretId: 'nomad/prod/gossip' } }).gossip;

    expect(gossip).toMatchObject({ restartAfterRotation: false, stabilizationSeconds: 10 });
  });

  it('fills the seed guide defaults for paths, modes, TTL and rollout', () => {
    const config = parseClusterConfig(minimal);

    expect(config.region).toBe('global');
    expect(config.files.agentCert).toEqual({
      path: '/opt/nomad/agent-certs/agent.crt',
      mode: '0644',
      owner: 'root',
      group: 'root',
    });
    expect(config.files.agentKey.mode).toBe('0600');
    expect(config.files.cliKey).toMatchObject({ path: '/opt/nomad/cli-certs/cli.key', mode: '0640' });
    expect(config.certificates).toMatchObject({ ttl: 86_400, keyType: 'ec-p256', jitter: 0.1 });
    expect(config.certificates.renewWhenRemaining).toBeCloseTo(1 / 3);
    expect(config.rollout.clientWaveSize).toBe(5);
  });

  it("defaults the agent's address, verify_https_client and settle interval as the seed guide runs Nomad", () => {
    expect(parseClusterConfig(minimal).nomad).toEqual({
      address: 'https://127.0.0.1:4646',
      verifyHttpsClient: true,
      settleSeconds: 3,
    });
  });

  it('refuses an agent address that is not https, naming the field', () => {
    expect(() => parseClusterConfig({ ...minimal, nomad: { address: 'http://127.0.0.1:4646' } })).toThrow(
      /nomad\.address: must be an https:\/\/ address/,
    );
  });

  it('refuses a Vault address that is not https, naming the field: the token rides on every request', () => {
    expect(() =>
      parseClusterConfig({ ...minimal, vault: { ...minimal.vault, address: 'http://vault.internal:8200' } }),
    ).toThrow(/vault\.address: an https:\/\/ address of Vault \(plain http only on a loopback address\)/);
  });

  it('refuses a command timeout shorter than an install with its rollback may run', () => {
    const attempt = () =>
      parseClusterConfig({
        ...minimal,
        rollout: { serverHealthTimeoutSeconds: 600, commandTimeoutSeconds: 900 },
      });

    expect(attempt).toThrow(/rollout\.commandTimeoutSeconds: must be at least 1326/);
  });

  it('accepts durations as text or seconds', () => {
    const config = parseClusterConfig({
      ...minimal,
      certificates: { ...UNCHECKED_TRUST_ANCHORS, ttl: '72h', minimumValidity: 600 },
    });

    expect(config.certificates.ttl).toBe(259_200);
    expect(config.certificates.minimumValidity).toBe(600);
  });

  it('names every bad field and what is allowed, without echoing values', () => {
    const attempt = () =>
      parseClusterConfig({
        name: 'Prod Cluster',
        vault: { address: 'ftp://vault', tokenSecretId: 'x' },
        files: { agentKey: { path: '/opt/nomad/agent-certs/../../etc/shadow', mode: '0644' } },
        certificates: { ttl: 'soon' },
        surprise: true,
      });

    expect(attempt).toThrow(ValidationError);
    const message = (() => {
      try {
        attempt();
      } catch (error) {
        return (error as Error).message;
      }
    })();
    expect(message).toContain('name: must be 1-48 lower-case letters');
    expect(message).toContain('vault.address');
    expect(message).toContain('files.agentKey.path: must be an absolute path under /opt/nomad/');
    expect(message).toContain('no "." or ".." segment');
    expect(message).toContain(
      'files.agentKey.mode: must be an octal mode of a private key, not world-accessible',
    );
    expect(message).toContain('certificates.ttl: must be a positive duration');
    expect(message).toContain('surprise: unknown field (not allowed)');
  });

  it('refuses a path a shell could misread', () => {
    expect(() =>
      parseClusterConfig({ ...minimal, files: { ca: { path: '/opt/nomad/$(reboot)/ca.crt' } } }),
    ).toThrow(/files\.ca\.path: must be an absolute path/);
  });

  it('refuses two clusters with the same name', () => {
    expect(() => parseClustersConfig([minimal, minimal])).toThrow(/1\.name: duplicate cluster name prod/);
  });
});
