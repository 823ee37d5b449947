import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pluginOutput } from '../../local/aws/ssm-agent';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import type { NodeSandbox } from '../../local/node/sandbox';
import { validateCsr } from '../../shared/certificates/csr';
import { lastJsonLine, prepareOutputSchema } from '../../shared/certificates/outputs';
import { DEFAULT_FILES, renderDocument, TEST_CLUSTER } from '../helpers/documents';
import { rotateOnNode } from '../helpers/node-rotation';
import { opensslCa } from '../helpers/openssl-ca';

// The real prepare document under bash with real openssl on a sandbox node, at its largest: the
// longest attempt id the pattern allows and a node that already holds certificates to report.

/** ListCommandInvocations with details keeps an output whole only below this many characters. */
const DETAILS_OUTPUT_LIMIT = 2_500;
/** The longest attempt id the pattern allows; one per key type, so no run reuses another's keys. */
const longestAttemptId = (keyType: string) => `${keyType}-`.padEnd(64, 'a');

let baseDir: string;
let fleet: NodeFleet;
let node: NodeSandbox;
let ca: Awaited<ReturnType<typeof opensslCa>>;

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'prepare-output-'));
  ca = await opensslCa();
  fleet = await createNodeFleet({ baseDir, servers: 1, clients: 0, clusterName: TEST_CLUSTER });
  [node] = fleet.nodes() as [NodeSandbox];
  expect((await rotateOnNode(node, { ca })).result).toMatchObject({ ok: true });
}, 120_000);

afterAll(async () => {
  await fleet.stop();
  await ca.dispose();
  await rm(baseDir, { recursive: true, force: true });
});

describe("prepare's output", () => {
  it.each(['ec-p256', 'rsa-2048'] as const)(
    'fits whole in the invocation listing and carries CSRs the rotator accepts (%s)',
    async (keyType) => {
      const run = await node.runScript({
        script: renderDocument('prepare', {
          attemptId: longestAttemptId(keyType),
          keyType,
          ...DEFAULT_FILES,
        }),
        commandId: `prepare-output-${keyType}`,
        timeoutSeconds: 60,
      });

      const output = prepareOutputSchema.parse(lastJsonLine(run.stdout));
      expect(run).toMatchObject({ exitCode: 0, stderr: '' });
      expect(output.current.agent).not.toBeNull();
      expect(run.stdout.length).toBeLessThan(DETAILS_OUTPUT_LIMIT);
      expect(pluginOutput({ ...run, endedAt: Date.now() })).toBe(run.stdout);
      await expect(validateCsr(output.agentCsr, keyType, 'agent CSR')).resolves.toContain(
        'BEGIN CERTIFICATE REQUEST',
      );
      await expect(validateCsr(output.cliCsr, keyType, 'CLI CSR')).resolves.toContain(
        'BEGIN CERTIFICATE REQUEST',
      );
    },
  );
});
