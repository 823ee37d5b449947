import { chmod, chown, cp, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidParameters, SendCommandCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type SsmEmulator, startSsmEmulator } from '../../local/aws/ssm';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { commandDocument } from '../../shared/documents';
import { certificateFingerprint } from '../../shared/documents/fingerprints';
import { DEFAULT_FILES, renderDocument, TEST_CLUSTER } from '../helpers/documents';
import { rotateOnNode, servedSerial } from '../helpers/node-rotation';
import { opensslCa } from '../helpers/openssl-ca';

// The node side against a hostile CA bundle and a hostile file system, on a real sandbox node: the
// real documents under bash, real openssl, a running agent whose served certificate tells whether
// anything changed.

type TestCa = Awaited<ReturnType<typeof opensslCa>>;

let baseDir: string;
let fleet: NodeFleet;
let node: NodeSandbox;
let ca: TestCa;
let newCa: TestCa;
let attacker: TestCa;
/** A directory of the host's /etc, which is the node's /etc too: where a planted link points. */
let decoy: string;

const agentCerts = () => join(node.root, 'opt/nomad/agent-certs');
const cliCerts = () => join(node.root, 'opt/nomad/cli-certs');
const onDisk = (file: string) => readFile(join(agentCerts(), file), 'utf8');
let prepares = 0;

/** The prepare document alone, as the rotator sends it; its one JSON line. */
async function prepare(): Promise<Record<string, unknown>> {
  prepares += 1;
  const attemptId = `hardening-${process.pid}-${prepares}`;
  const run = await node.runScript({
    script: renderDocument('prepare', { attemptId, ...DEFAULT_FILES }),
    commandId: `prepare-${attemptId}`,
    timeoutSeconds: 60,
  });
  return JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
}

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'node-hardening-'));
  decoy = await mkdtemp('/etc/nomad-rotator-decoy-');
  [ca, newCa, attacker] = await Promise.all([opensslCa(), opensslCa(), opensslCa()]);
  fleet = await createNodeFleet({
    baseDir,
    servers: 1,
    clients: 0,
    clusterName: TEST_CLUSTER,
    agent: { rpcHoldTimeoutMs: 500, raftProbeIntervalMs: 100 },
  });
  [node] = fleet.nodes() as [NodeSandbox];
  expect((await rotateOnNode(node, { ca })).result).toMatchObject({ ok: true });
}, 120_000);

afterAll(async () => {
  await fleet.stop();
  await Promise.all([ca.dispose(), newCa.dispose(), attacker.dispose()]);
  await rm(decoy, { recursive: true, force: true });
  await rm(baseDir, { recursive: true, force: true });
});

describe('the install accepts only the root CAs its deployed document names', () => {
  it('refuses a bundle with an extra attacker root before touching a file; the agent keeps its certificate', async () => {
    const before = await servedSerial(node);
    const bundleBefore = await onDisk('ca.crt');

    const { result } = await rotateOnNode(node, {
      ca,
      caBundle: `${ca.bundle}${attacker.root}`,
      trustedRoots: [certificateFingerprint(ca.root)],
    });

    expect(result).toMatchObject({
      ok: false,
      reason: 'ca-bundle-root-not-trusted',
      detail: certificateFingerprint(attacker.root),
      touched: false,
    });
    expect(await servedSerial(node)).toBe(before);
    expect(await onDisk('ca.crt')).toBe(bundleBefore);
  });

  it('refuses an attacker CA that is not self-signed too: Nomad trusts every certificate of ca_file', async () => {
    const before = await servedSerial(node);

    const { result } = await rotateOnNode(node, {
      ca,
      caBundle: `${ca.bundle}${attacker.intermediate}`,
      trustedRoots: [certificateFingerprint(ca.root)],
    });

    expect(result).toMatchObject({
      ok: false,
      reason: 'ca-bundle-root-not-trusted',
      detail: certificateFingerprint(attacker.intermediate),
    });
    expect(await servedSerial(node)).toBe(before);
  });

  it('goes through a CA rotation once the new root is deployed, and not before', async () => {
    const both = `${ca.bundle}${newCa.bundle}`;
    const deployed = [certificateFingerprint(ca.root), certificateFingerprint(newCa.root)];

    const early = await rotateOnNode(node, { ca, caBundle: both, trustedRoots: deployed.slice(0, 1) });
    const bundle = await rotateOnNode(node, { ca, caBundle: both, trustedRoots: deployed });
    const leaves = await rotateOnNode(node, { ca: newCa, caBundle: both, trustedRoots: deployed });

    expect(early.result).toMatchObject({ ok: false, reason: 'ca-bundle-root-not-trusted' });
    expect(bundle.result).toMatchObject({ ok: true });
    expect(leaves.result).toMatchObject({ ok: true });
    expect(await servedSerial(node)).toBe(leaves.agent.serial);
  });
});

describe('the documents write only into fresh directories of their own', () => {
  afterEach(async () => {
    // What a test planted goes; the node must work as before.
    for (const dir of [agentCerts(), cliCerts()]) {
      await chown(dir, 0, 0);
      for (const name of ['.pending', '.backup']) await rm(join(dir, name), { recursive: true, force: true });
    }
  });

  it('refuses a planted .pending -> /etc link and writes nothing through it; the agent keeps its certificate', async () => {
    const before = await servedSerial(node);
    await rm(join(agentCerts(), '.pending'), { recursive: true, force: true });
    await symlink(decoy, join(agentCerts(), '.pending'));

    const result = await prepare();

    expect(result).toMatchObject({ ok: false, reason: 'unsafe-pending-dir', detail: 'agentKey' });
    expect(await readdir(decoy)).toEqual([]);
    expect(await servedSerial(node)).toBe(before);
  });

  it('refuses a pre-created world-writable .pending and writes nothing into it', async () => {
    const pending = join(cliCerts(), '.pending');
    await rm(pending, { recursive: true, force: true });
    await mkdir(pending);
    await chmod(pending, 0o777);

    const result = await prepare();

    expect(result).toMatchObject({ ok: false, reason: 'unsafe-pending-dir', detail: 'cliKey' });
    expect(await readdir(pending)).toEqual([]);
  });

  it('refuses a certificate directory another user owns', async () => {
    await chown(cliCerts(), 1000, 1000);

    const result = await prepare();

    expect(result).toMatchObject({ ok: false, reason: 'unsafe-directory', detail: 'cliKey' });
  });

  it('refuses a planted .backup -> /etc link before touching a file; the agent keeps its certificate', async () => {
    const before = await servedSerial(node);
    await symlink(decoy, join(agentCerts(), '.backup'));

    const { result } = await rotateOnNode(node, { ca: newCa, caBundle: `${ca.bundle}${newCa.bundle}` });

    expect(result).toMatchObject({ ok: false, reason: 'unsafe-backup-dir', touched: false });
    expect(await readdir(decoy)).toEqual([]);
    expect(await servedSerial(node)).toBe(before);
  });

  it('refuses to replace a certificate file that is a link', async () => {
    const before = await servedSerial(node);
    const bundleFile = join(agentCerts(), 'ca.crt');
    const elsewhere = join(decoy, 'ca.crt');
    await cp(bundleFile, elsewhere);
    await rm(bundleFile);
    await symlink(elsewhere, bundleFile);

    try {
      const { result } = await rotateOnNode(node, { ca: newCa, caBundle: `${ca.bundle}${newCa.bundle}` });

      expect(result).toMatchObject({ ok: false, reason: 'unsafe-path', detail: 'ca', touched: false });
      expect(await servedSerial(node)).toBe(before);
    } finally {
      await rm(bundleFile);
      await cp(elsewhere, bundleFile);
      await rm(elsewhere);
    }
  });

  it('rotates as before once nothing is planted, twice in a row', async () => {
    const bundle = `${ca.bundle}${newCa.bundle}`;

    const first = await rotateOnNode(node, { ca: newCa, caBundle: bundle });
    const second = await rotateOnNode(node, { ca: newCa, caBundle: bundle });

    expect(first.result).toMatchObject({ ok: true, changed: true });
    expect(second.result).toMatchObject({ ok: true, changed: true });
    expect(await servedSerial(node)).toBe(second.agent.serial);
    expect((await readdir(agentCerts())).filter((name) => name.startsWith('.'))).toEqual([]);
  });
});

describe('SSM itself refuses what the documents must never be given', () => {
  let ssm: SsmEmulator;
  let client: SSMClient;

  beforeAll(async () => {
    ssm = await startSsmEmulator({ fleet, events: () => {} });
    client = ssm.client({ maxAttempts: 1 });
    ssm.registerDocument(
      'Install',
      commandDocument('install', [
        { name: TEST_CLUSTER, certificates: { trustedRootFingerprints: [certificateFingerprint(ca.root)] } },
      ]),
    );
  });

  afterAll(async () => {
    await ssm.stop();
  });

  it.each([
    ['a system path', { caPath: '/etc/passwd' }],
    ["a path into root's ssh keys", { agentCertPath: '/root/.ssh/authorized_keys' }],
    ['a ".." segment', { cliCertPath: '/opt/nomad/cli-certs/../../../usr/bin/nomad' }],
    ['a world-readable key mode', { agentKeyMode: '0644' }],
  ])('refuses %s and runs nothing', async (_, override) => {
    const before = ssm.history().length;
    const parameters = {
      attemptId: 'abc123-0f0f0f0f',
      cluster: TEST_CLUSTER,
      role: 'server',
      region: 'global',
      certificates: 'QUJD',
      chain: 'QUJD',
      caBundle: 'QUJD',
      minimumValiditySeconds: '600',
      healthTimeoutSeconds: '5',
      ...DEFAULT_FILES,
      ...override,
    };

    const sent = client.send(
      new SendCommandCommand({
        DocumentName: 'Install',
        InstanceIds: [node.instanceId],
        Parameters: Object.fromEntries(Object.entries(parameters).map(([name, value]) => [name, [value]])),
      }),
    );

    await expect(sent).rejects.toBeInstanceOf(InvalidParameters);
    expect(ssm.history()).toHaveLength(before);
  });
});
