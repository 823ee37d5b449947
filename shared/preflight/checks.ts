import { createHash } from 'node:crypto';
import { caDaysToExpiryThreshold } from '../certificates/renewal';
import type { ClusterConfig } from '../config';
import { commandDocument, type DocumentKind } from '../documents';
import { describeError } from '../errors';
import { VaultTlsError, VaultUnavailableError } from '../vault/errors';
import type { Deployment } from './deployment';
import {
  type AlarmReader,
  type DocumentReader,
  type NodeLister,
  type QueueReader,
  TokenUnreadableError,
  type TriggerReader,
  type VaultProbe,
} from './ports';
import type { Check, CheckResult } from './report';

export interface DoctorInputs {
  cluster: string;
  /** The deployed clusters and the stack's names, or why they could not be read. */
  configuration: { clusters: ClusterConfig[]; deployment: Deployment } | { error: unknown };
  vault: (cluster: ClusterConfig) => VaultProbe;
  documents: DocumentReader;
  nodes: NodeLister;
  triggers: TriggerReader;
  alarms: AlarmReader;
  queues: QueueReader;
  now: () => number;
}

type Verdict = Omit<CheckResult, 'check'>;

const ok = (detail: string): Verdict => ({ status: 'ok', detail, action: '' });

/** The checks in the order they print; every one is always there, so `--json` has a stable shape. */
export const CHECK_NAMES = [
  'config',
  'vault',
  'vault-token',
  'vault-ca',
  'documents',
  'nodes',
  'schedules',
  'alarms',
  'dead-letters',
] as const;

type CheckName = (typeof CHECK_NAMES)[number];

export function doctorChecks(inputs: DoctorInputs): Check[] {
  const { configuration } = inputs;
  const cluster =
    'error' in configuration
      ? undefined
      : configuration.clusters.find((candidate) => candidate.name === inputs.cluster);
  if ('error' in configuration || cluster === undefined) {
    const problem =
      'error' in configuration
        ? describeError(configuration.error)
        : `cluster ${inputs.cluster} is not among the deployed clusters (${configuration.clusters.map(({ name }) => name).join(', ')})`;
    return CHECK_NAMES.map((name) => ({
      name,
      run: async () =>
        name === 'config'
          ? {
              status: 'fail',
              detail: problem,
              action: 'fix the clusters file and deploy it (cdk deploy), or name a deployed cluster',
            }
          : {
              status: 'fail',
              detail: 'not checked: no valid configuration',
              action: 'fix the configuration first',
            },
    }));
  }
  const { clusters, deployment } = configuration;
  const vault = inputs.vault(cluster);
  const runs: Record<CheckName, () => Promise<Verdict>> = {
    config: async () =>
      ok(`${clusters.length} deployed cluster(s) valid; ${cluster.name} uses Vault ${cluster.vault.address}`),
    vault: () => checkVault(vault, cluster),
    'vault-token': () => unlessUnavailable(checkToken(vault, cluster)),
    'vault-ca': () => unlessUnavailable(checkIssuer(vault, cluster, inputs.now())),
    documents: () => checkDocuments(inputs.documents, deployment, clusters),
    nodes: () => checkNodes(inputs.nodes, cluster),
    schedules: () => checkTriggers(inputs.triggers, deployment),
    alarms: () => checkAlarms(inputs.alarms, deployment),
    'dead-letters': () => checkDeadLetters(inputs.queues, deployment),
  };
  return CHECK_NAMES.map((name) => ({ name, run: runs[name] }));
}

async function checkVault(vault: VaultProbe, cluster: ClusterConfig): Promise<Verdict> {
  const address = cluster.vault.address;
  let health: Awaited<ReturnType<VaultProbe['health']>>;
  try {
    health = await vault.health();
  } catch (error) {
    return {
      status: 'fail',
      detail: `no verified TLS answer from ${address}: ${describeError(error)}`,
      action: 'check vault.address, vault.caBundlePem (the CA that signed the listener) and the network path',
    };
  }
  if (!health.initialized)
    return { status: 'fail', detail: `${address} is not initialized`, action: 'initialize Vault' };
  if (health.sealed)
    return {
      status: 'fail',
      detail: `${address} is sealed: nothing can be signed`,
      action: 'unseal Vault (vault operator unseal); rotations resume on the next tick',
    };
  if (health.standby)
    return {
      status: 'warn',
      detail: `${address} answered as a standby node`,
      action: 'point vault.address at the active node or the cluster’s load balancer',
    };
  return ok(`${address} reachable over verified TLS, unsealed, active`);
}

/** A Vault that cannot answer (sealed, unreachable) is the vault check's finding; the others point to it. */
async function unlessUnavailable(verdict: Promise<Verdict>): Promise<Verdict> {
  try {
    return await verdict;
  } catch (error) {
    if (!(error instanceof VaultUnavailableError || error instanceof VaultTlsError)) throw error;
    return {
      status: 'fail',
      detail: `not checked: ${describeError(error)}`,
      action: 'make Vault answer first (see the vault check)',
    };
  }
}

async function checkToken(vault: VaultProbe, cluster: ClusterConfig): Promise<Verdict> {
  const { pkiMount, serverRole, clientRole, cliRole, tokenRotation } = cluster.vault;
  const paths = [serverRole, clientRole, cliRole].map((role) => `${pkiMount}/sign/${role}`);
  let ttl: number;
  let granted: Record<string, readonly string[]>;
  try {
    ttl = await vault.tokenTtlSeconds();
    granted = await vault.capabilities(paths);
  } catch (error) {
    if (!(error instanceof TokenUnreadableError)) throw error;
    return {
      status: 'warn',
      detail: `not checked: ${error.message} (only the rotator's functions may read it)`,
      action:
        'rotate-token tests lookup-self and the sign capabilities at every rotation: a failure raises TokenRotationFailed',
    };
  }
  const missing = paths.filter((path) => !granted[path]?.includes('update'));
  if (missing.length > 0)
    return {
      status: 'fail',
      detail: `the rotator's token lacks update on ${missing.join(', ')}`,
      action: `run nomad-rotator vault-bootstrap --spec … --clusters … so ${tokenRotation.tokenPolicy} grants the sign paths`,
    };
  // The token is periodic and rotate-token renews it well before a quarter of its period is left.
  if (ttl > 0 && ttl < tokenRotation.tokenPeriod / 4)
    return {
      status: 'warn',
      detail: `the rotator's token has ${formatHours(ttl)} left of its ${formatHours(tokenRotation.tokenPeriod)} period`,
      action: 'the token rotation may be stalled: see the TokenRotationFailed alarm and rotate-token’s log',
    };
  return ok(
    `the rotator's token is valid (${formatHours(ttl)} left) with update on ${paths.length} sign paths`,
  );
}

async function checkIssuer(vault: VaultProbe, cluster: ClusterConfig, now: number): Promise<Verdict> {
  const days = (Math.floor(((await vault.issuerNotAfter()) - now) / 3_600_000) / 24).toFixed(1);
  const threshold = caDaysToExpiryThreshold(cluster);
  const renew = `sign a new intermediate, import it and make it the default issuer of ${cluster.vault.pkiMount}; then nomad-rotator reissue`;
  if (Number(days) <= 0)
    return {
      status: 'fail',
      detail: `the issuing CA of ${cluster.vault.pkiMount} has expired`,
      action: renew,
    };
  if (Number(days) < threshold)
    return {
      status: 'warn',
      detail: `the issuing CA of ${cluster.vault.pkiMount} expires in ${days} days (under ${threshold})`,
      action: renew,
    };
  return ok(`the issuing CA of ${cluster.vault.pkiMount} has ${days} days left (warns under ${threshold})`);
}

async function checkDocuments(
  reader: DocumentReader,
  deployment: Deployment,
  clusters: readonly ClusterConfig[],
): Promise<Verdict> {
  const kinds = Object.keys(deployment.documents) as DocumentKind[];
  const problems = await Promise.all(
    kinds.map(async (kind) => {
      const name = deployment.documents[kind];
      const stored = await reader.get(name);
      if (stored === undefined) return `${name} is missing`;
      if (stored.status !== 'Active') return `${name} is ${stored.status}`;
      const deployed = fingerprint(stored.content);
      const expected = fingerprint(commandDocument(kind, clusters));
      return deployed === expected
        ? undefined
        : `${name} (version ${stored.version}) is sha256:${deployed}, this release's is sha256:${expected}`;
    }),
  );
  const found = problems.filter((problem) => problem !== undefined);
  if (found.length > 0)
    return {
      status: 'fail',
      detail: found.join('; '),
      action: 'deploy the stack from this release (cdk deploy) so the nodes run the scripts this CLI expects',
    };
  return ok(`${kinds.map((kind) => deployment.documents[kind]).join(', ')} match this release`);
}

async function checkNodes(lister: NodeLister, cluster: ClusterConfig): Promise<Verdict> {
  const nodes = await lister.list(cluster);
  if (nodes.length === 0)
    return {
      status: 'fail',
      detail: 'no running instance matches the inventory',
      action: 'check inventory (Auto Scaling groups, instance profiles) against the instances EC2 lists',
    };
  const offline = nodes.filter((node) => !node.online);
  const counts = (['server', 'client'] as const).map((role) => {
    const ofRole = nodes.filter((node) => node.role === role);
    return `${ofRole.length - ofRole.filter((node) => !node.online).length}/${ofRole.length} ${role}s online`;
  });
  const serversOnline = nodes.some((node) => node.role === 'server' && node.online);
  const listed = offline
    .slice(0, 5)
    .map((node) => node.instanceId)
    .join(', ');
  const offlineText = offline.length === 0 ? '' : `; offline: ${listed}${offline.length > 5 ? ', …' : ''}`;
  if (!serversOnline)
    return {
      status: 'fail',
      detail: `${counts.join(', ')}${offlineText}`,
      action: 'no server answers SSM: check the servers’ SSM agent, instance role and network',
    };
  if (offline.length > 0)
    return {
      status: 'warn',
      detail: `${counts.join(', ')}${offlineText}`,
      action: 'rotations skip these nodes until their SSM agent is Online: check the agent and the instance',
    };
  return ok(counts.join(', '));
}

async function checkTriggers(reader: TriggerReader, deployment: Deployment): Promise<Verdict> {
  const { name, group } = deployment.tickSchedule;
  const states = await Promise.all([
    reader.schedule(name, group).then((state) => ({ what: `schedule ${group}/${name}`, state })),
    ...deployment.eventRules.map((rule) =>
      reader.rule(rule).then((state) => ({ what: `rule ${rule}`, state })),
    ),
  ]);
  const off = states.filter(({ state }) => state !== 'ENABLED');
  if (off.length > 0)
    return {
      status: 'fail',
      detail: off.map(({ what, state }) => `${what} is ${state?.toLowerCase() ?? 'missing'}`).join('; '),
      action:
        'enable them (aws scheduler update-schedule … --state ENABLED, aws events enable-rule --name …) or redeploy: without the tick nothing renews, without the rules command outcomes wait for the tick',
    };
  return ok(`the tick schedule and ${deployment.eventRules.length} event rule(s) are enabled`);
}

async function checkAlarms(reader: AlarmReader, deployment: Deployment): Promise<Verdict> {
  const alarms = await reader.inAlarm(deployment.alarmNamePrefix);
  if (alarms.length > 0)
    return {
      status: 'fail',
      detail: `in ALARM: ${alarms.map(({ name }) => name).join(', ')}`,
      action: 'follow each alarm’s runbook in the README (Alarms)',
    };
  return ok(`no alarm named ${deployment.alarmNamePrefix}* is in ALARM`);
}

async function checkDeadLetters(reader: QueueReader, deployment: Deployment): Promise<Verdict> {
  const depths = await Promise.all(
    Object.entries(deployment.deadLetterQueues).map(async ([name, url]) => ({
      name,
      depth: await reader.depth(url),
    })),
  );
  const full = depths.filter(({ depth }) => depth > 0);
  if (full.length > 0)
    return {
      status: 'warn',
      detail: full.map(({ name, depth }) => `${name}: ${depth} message(s)`).join(', '),
      action:
        'events that were never applied: the tick reconciles the nodes they were about; inspect, then purge or redrive the queue',
    };
  return ok(`${depths.length} dead-letter queue(s) empty`);
}

/** A short digest of a document's content, its keys sorted, so formatting alone never differs. */
export function fingerprint(content: unknown): string {
  return createHash('sha256').update(canonicalJson(content)).digest('hex').slice(0, 12);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.keys(value)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

function formatHours(seconds: number): string {
  return `${(seconds / 3600).toFixed(1)}h`;
}
