import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { rotateOnNode, servedSerial as served } from '../helpers/node-rotation';
import { opensslCa } from '../helpers/openssl-ca';

// The install's proof against the stand-in's modelled Raft: the new certificate counts only if the
// agent still reaches a leader through its own reloaded RPC, on servers and on clients.

let baseDir: string;
let fleet: NodeFleet;
let oldCa: Awaited<ReturnType<typeof opensslCa>>;
let newCa: Awaited<ReturnType<typeof opensslCa>>;
let servers: NodeSandbox[];
let client: NodeSandbox;

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'install-proof-'));
  [oldCa, newCa] = await Promise.all([opensslCa(), opensslCa()]);
  fleet = await createNodeFleet({
    baseDir,
    servers: 3,
    clients: 1,
    clusterName: 'prod',
    restartDelayMs: 500,
    agent: { rpcHoldTimeoutMs: 500, raftProbeIntervalMs: 100 },
  });
  servers = fleet.nodes().filter((node) => node.role === 'server');
  client = fleet.nodes().find((node) => node.role === 'client')!;
  // First issuance, servers one at a time as the rotator does, then the client.
  for (const server of servers) {
    expect((await rotateOnNode(server, { ca: oldCa })).result).toMatchObject({ ok: true });
  }
  expect((await rotateOnNode(client, { ca: oldCa, role: 'client' })).result).toMatchObject({ ok: true });
}, 120_000);

afterAll(async () => {
  await fleet.stop();
  await Promise.all([oldCa.dispose(), newCa.dispose()]);
  await rm(baseDir, { recursive: true, force: true });
});

describe('the install proves the agent still reaches a leader through its reloaded RPC', () => {
  it('rolls a server back when its new certificate is one its peers do not trust yet', async () => {
    const before = await served(servers[0]!);

    const { result } = await rotateOnNode(servers[0]!, {
      ca: newCa,
      caBundle: `${oldCa.bundle}${newCa.bundle}`,
    });

    expect(result).toMatchObject({
      ok: false,
      reason: 'new-certificate-not-served',
      touched: true,
      restored: true,
    });
    expect(await served(servers[0]!)).toBe(before);
  });

  it('rolls a client back when the servers do not trust its new certificate, though its health is fine', async () => {
    const before = await served(client);

    const { result } = await rotateOnNode(client, {
      ca: newCa,
      role: 'client',
      caBundle: `${oldCa.bundle}${newCa.bundle}`,
    });

    expect(result).toMatchObject({ ok: false, reason: 'new-certificate-not-served', restored: true });
    expect(await served(client)).toBe(before);
  });

  it('completes a CA rollover done in order: the bundle with both CAs everywhere first, then the new leaves', async () => {
    const both = `${oldCa.bundle}${newCa.bundle}`;
    const nodes = [...servers, client];

    for (const node of nodes) {
      const role = node === client ? 'client' : 'server';
      expect(
        (await rotateOnNode(node, { ca: oldCa, role, caBundle: both })).result,
        `bundle on ${role}`,
      ).toMatchObject({ ok: true });
    }
    for (const node of nodes) {
      const role = node === client ? 'client' : 'server';
      expect(
        (await rotateOnNode(node, { ca: newCa, role, caBundle: both })).result,
        `leaf on ${role}`,
      ).toMatchObject({ ok: true });
    }
    // Eight real installs, each a reload and a TLS proof against a live agent: on two busy cores
    // that takes longer than the suite's default minute.
  }, 180_000);

  it('fails the proof, and says the old set is not proven either, when it sends no certificate to an agent that asks for one', async () => {
    const before = await served(client);

    const { result } = await rotateOnNode(client, {
      ca: newCa,
      role: 'client',
      caBundle: `${oldCa.bundle}${newCa.bundle}`,
      install: { verifyHttpsClient: 'false' },
    });

    // This fleet's agents set verify_https_client = true; a configuration that says otherwise can prove
    // nothing, so the node is restored but reported unproven.
    expect(result).toMatchObject({
      ok: false,
      reason: 'new-certificate-not-served',
      touched: true,
      restored: false,
    });
    expect(await served(client)).toBe(before);
  });

  it('proves without a client certificate on agents where verify_https_client is off', async () => {
    const plainDir = await mkdtemp(join(tmpdir(), 'install-proof-plain-'));
    const plain = await createNodeFleet({
      baseDir: plainDir,
      servers: 1,
      clients: 0,
      clusterName: 'plain',
      agent: { verifyHttpsClient: false, rpcHoldTimeoutMs: 500, raftProbeIntervalMs: 100 },
    });
    try {
      const [server] = plain.nodes();

      const first = await rotateOnNode(server!, { ca: oldCa, install: { verifyHttpsClient: 'false' } });
      const second = await rotateOnNode(server!, { ca: oldCa, install: { verifyHttpsClient: 'false' } });

      expect(first.result).toMatchObject({ ok: true, action: 'restart' });
      expect(second.result).toMatchObject({ ok: true, action: 'reload' });
    } finally {
      await plain.stop();
      await rm(plainDir, { recursive: true, force: true });
    }
  });
});
