import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  InvalidParameters,
  InvocationDoesNotExist,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SsmEmulator, startSsmEmulator } from '../../local/aws/ssm';
import type { AwsEvent } from '../../local/aws/ssm-commands';
import { createNodeFleet, type NodeFleet } from '../../local/node/fleet';
import { SsmCommandGateway } from '../../shared/aws/ssm';
import type { CommandDocument } from '../../shared/documents';
import { waitFor } from '../helpers/wait-for';

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../fixtures/aws/${name}`, import.meta.url), 'utf8')) as AwsEvent;

const testDocument = (script: string[], parameters: CommandDocument['parameters'] = {}): CommandDocument => ({
  schemaVersion: '2.2',
  description: 'test',
  parameters: {
    executionTimeout: { type: 'String', description: 't', allowedPattern: '^[0-9]{1,4}$', default: '30' },
    ...parameters,
  },
  mainSteps: [
    {
      action: 'aws:runShellScript',
      name: 'run',
      precondition: { StringEquals: ['platformType', 'Linux'] },
      inputs: { timeoutSeconds: '{{ executionTimeout }}', runCommand: script },
    },
  ],
});

let baseDir: string;
let fleet: NodeFleet;
let ssm: SsmEmulator;
let client: SSMClient;
const events: AwsEvent[] = [];

beforeAll(async () => {
  baseDir = await mkdtemp(join(tmpdir(), 'aws-ssm-'));
  fleet = await createNodeFleet({ baseDir, servers: 3, clients: 3, clusterName: 'prod' });
  ssm = await startSsmEmulator({ fleet, events: (event) => events.push(event) });
  client = ssm.client({ maxAttempts: 1 });
  ssm.registerDocument(
    'Echo',
    testDocument(['echo "hello {{ name }}"'], {
      name: { type: 'String', description: 'n', allowedPattern: '^[a-z]{1,10}$' },
    }),
  );
  ssm.registerDocument('Fail', testDocument(['echo oops >&2', 'exit 3']));
  ssm.registerDocument(
    'Loud',
    testDocument(['head -c 30000 /dev/zero | tr "\\0" a', 'head -c 9000 /dev/zero | tr "\\0" b >&2']),
  );
  ssm.registerDocument('Slow', testDocument(['sleep 8'], {}));
  ssm.registerDocument(
    'Report',
    testDocument(['echo "progress on stderr" >&2', 'echo \'{"ok":true,"stage":"install"}\'']),
  );
  ssm.registerDocument(
    'LongRepeat',
    testDocument(['touch /opt/nomad/long-repeat-ran', 'echo ran'], {
      payload: { type: 'String', description: 'p', allowedPattern: '^[a-z]{1,60000}$' },
    }),
  );
  ssm.registerDocument(
    'ShortTimeout',
    testDocument(['sleep 3', 'echo done'], {
      executionTimeout: { type: 'String', description: 't', allowedPattern: '^[0-9]{1,4}$', default: '2' },
    }),
  );
});

afterAll(async () => {
  await ssm.stop();
  await fleet.stop();
  await rm(baseDir, { recursive: true, force: true });
});

const send = (
  DocumentName: string,
  InstanceIds: string[],
  Parameters?: Record<string, string[]>,
  Comment = 'test',
) =>
  client.send(new SendCommandCommand({ DocumentName, InstanceIds, Parameters, Comment, TimeoutSeconds: 60 }));

const invocation = (CommandId: string, InstanceId: string) =>
  client.send(new GetCommandInvocationCommand({ CommandId, InstanceId }));

describe('SSM emulator through the real SSMClient', () => {
  it('finds a cluster role by tags and pages with NextToken', async () => {
    const filters = [{ Key: 'tag:nomad-cluster', Values: ['prod'] }];
    const first = await client.send(
      new DescribeInstanceInformationCommand({ Filters: filters, MaxResults: 5 }),
    );
    const second = await client.send(
      new DescribeInstanceInformationCommand({ Filters: filters, MaxResults: 5, NextToken: first.NextToken }),
    );
    const servers = await client.send(
      new DescribeInstanceInformationCommand({
        Filters: [...filters, { Key: 'tag:nomad-role', Values: ['server'] }],
      }),
    );

    expect(first.InstanceInformationList).toHaveLength(5);
    expect(second.InstanceInformationList).toHaveLength(1);
    expect(second.NextToken).toBeUndefined();
    expect(servers.InstanceInformationList?.map((info) => info.PingStatus)).toEqual([
      'Online',
      'Online',
      'Online',
    ]);
    expect(servers.InstanceInformationList?.[0]).toMatchObject({
      IPAddress: '127.0.0.1',
      PlatformType: 'Linux',
    });
  });

  it('runs the document with substituted parameters and reports output, comment and events', async () => {
    const node = fleet.nodes()[0]!;
    events.length = 0;

    const { Command } = await send(
      'Echo',
      [node.instanceId],
      { name: ['nomad'] },
      'nomad-rotator:prod:prepare:abc',
    );
    await ssm.idle();
    const result = await invocation(Command!.CommandId!, node.instanceId);

    expect(result).toMatchObject({
      Status: 'Success',
      StatusDetails: 'Success',
      ResponseCode: 0,
      StandardOutputContent: 'hello nomad\n',
      Comment: 'nomad-rotator:prod:prepare:abc',
    });
    const perInvocation = events.filter(
      (event) => event['detail-type'] === fixture('ssm-invocation-status-change.json')['detail-type'],
    );
    expect(perInvocation.map((event) => event.detail.status)).toEqual(['InProgress', 'Success']);
    for (const [event, sample] of [
      [perInvocation[1]!, fixture('ssm-invocation-status-change.json')],
      [
        events.find((e) => e['detail-type'] === 'EC2 Command Status-change Notification')!,
        fixture('ssm-command-status-change.json'),
      ],
    ] as const) {
      expect(Object.keys(event).sort()).toEqual(Object.keys(sample).sort());
      expect(Object.keys(event.detail).sort()).toEqual(Object.keys(sample.detail).sort());
    }
  });

  it('finds a command sent to an instance by its comment, only from the given time on', async () => {
    // Arrange: what a run that died before recording the command id leaves behind
    const node = fleet.nodes()[1]!;
    const comment = 'nomad-rotator:prod:certs:install:c0ffee-0123abcd';
    const gateway = new SsmCommandGateway(client, { prepare: 'Echo', install: 'Echo', gossip: 'Echo' });
    const before = Date.now();
    await send('Echo', [fleet.nodes()[2]!.instanceId], { name: ['other'] }, comment);
    const { Command } = await send('Echo', [node.instanceId], { name: ['nomad'] }, comment);
    await send('Echo', [node.instanceId], { name: ['later'] }, `${comment.slice(0, -1)}e`);

    // Act
    const found = await gateway.findSent(node.instanceId, comment, before);
    const fromLater = await gateway.findSent(node.instanceId, comment, Date.now() + 60 * 60_000);

    // Assert
    expect(found).toBe(Command!.CommandId);
    expect(fromLater).toBeUndefined();
    await expect(
      client.send(
        new ListCommandInvocationsCommand({ Filters: [{ key: 'InvokedAfter', value: 'yesterday' }] }),
      ),
    ).rejects.toThrow(/filter/);
  });

  it('answers InvocationDoesNotExist right after SendCommand, then the result', async () => {
    // Long enough that the first look, right after SendCommand, falls inside it on a loaded machine.
    ssm.knobs.invocationVisibleAfterMs = 1_000;
    const node = fleet.nodes()[1]!;
    const { Command } = await send('Echo', [node.instanceId], { name: ['x'] });

    await expect(invocation(Command!.CommandId!, node.instanceId)).rejects.toBeInstanceOf(
      InvocationDoesNotExist,
    );
    ssm.knobs.invocationVisibleAfterMs = 0;
    const visible = await waitFor(
      () =>
        invocation(Command!.CommandId!, node.instanceId).catch((error: unknown) => {
          if (error instanceof InvocationDoesNotExist) return undefined;
          throw error;
        }),
      { timeoutMs: 5_000, what: 'the invocation to become visible after its consistency delay' },
    );
    expect(visible.CommandId).toBe(Command!.CommandId);
    await ssm.idle();
    expect((await invocation(Command!.CommandId!, node.instanceId)).Status).toBe('Success');
  });

  it('refuses a value outside allowedPattern and runs nothing', async () => {
    const before = ssm.history().length;

    await expect(
      send('Echo', [fleet.nodes()[0]!.instanceId], { name: ["x'; reboot"] }),
    ).rejects.toBeInstanceOf(InvalidParameters);
    await expect(
      send('Echo', [fleet.nodes()[0]!.instanceId], { name: ['ok'], extra: ['1'] }),
    ).rejects.toBeInstanceOf(InvalidParameters);
    expect(ssm.history()).toHaveLength(before);
  });

  it('fails the whole document, with no output, when the agent cannot compile a pattern under RE2', async () => {
    const node = fleet.node(fleet.nodes()[4]!.instanceId)!;

    // SSM's API accepts the pattern (Java regex); the agent's Go regexp refuses repeat counts over 1000.
    const { Command } = await send('LongRepeat', [node.instanceId], { payload: ['abc'] });
    await ssm.idle();

    expect(await invocation(Command!.CommandId!, node.instanceId)).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: -1,
      StandardOutputContent: '',
    });
    expect(existsSync(join(node.root, 'opt/nomad/long-repeat-ran'))).toBe(false);
  });

  it("clamps a step's timeout below 5 s to the agent's 3600 s default", async () => {
    const node = fleet.nodes()[4]!;

    const { Command } = await send('ShortTimeout', [node.instanceId]);
    await ssm.idle();

    expect(await invocation(Command!.CommandId!, node.instanceId)).toMatchObject({
      Status: 'Success',
      StandardOutputContent: 'done\n',
    });
  });

  it('lists invocations with details: stdout, the error marker and stderr in 2,500 characters, 50 a page', async () => {
    const node = fleet.nodes()[5]!;
    const failed = await send('Fail', [node.instanceId]);
    const loud = await send('Loud', [node.instanceId]);
    await ssm.idle();

    const details = (commandId: string) =>
      client.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }));
    const failedPage = await details(failed.Command!.CommandId!);
    const loudPage = await details(loud.Command!.CommandId!);
    const firstPage = await client.send(new ListCommandInvocationsCommand({ MaxResults: 2 }));
    const secondPage = await client.send(
      new ListCommandInvocationsCommand({ MaxResults: 2, NextToken: firstPage.NextToken }),
    );

    expect(failedPage.CommandInvocations?.[0]?.CommandPlugins?.[0]).toMatchObject({
      Name: 'run',
      Status: 'Failed',
      ResponseCode: 3,
      Output: '\n----------ERROR-------\noops\n',
    });
    const loudOutput = loudPage.CommandInvocations?.[0]?.CommandPlugins?.[0]?.Output ?? '';
    expect(loudOutput.length).toBeLessThanOrEqual(2_500);
    expect(loudOutput).toMatch(
      /^a+\n---Output truncated---\n----------ERROR-------\nb+\n---Error truncated----$/,
    );
    expect(firstPage.CommandInvocations).toHaveLength(2);
    expect(secondPage.CommandInvocations?.[0]?.CommandId).not.toBe(
      firstPage.CommandInvocations?.[0]?.CommandId,
    );
    await expect(client.send(new ListCommandInvocationsCommand({ MaxResults: 51 }))).rejects.toThrow(
      /between 1 and 50/,
    );
  });

  it("reads a command's results and comment for all its nodes in one listing: stdout without stderr, a cut output named to be read alone", async () => {
    // Arrange
    const gateway = new SsmCommandGateway(client, { prepare: 'Echo', install: 'Echo', gossip: 'Echo' });
    const nodes = fleet
      .nodes()
      .slice(0, 3)
      .map((node) => node.instanceId);
    const comment = 'nomad-rotator:prod:certs:install:c0ffee-89abcdef';
    const report = await send('Report', nodes, undefined, comment);
    const failed = await send('Fail', [nodes[0]!]);
    const loud = await send('Loud', [nodes[0]!]);
    await ssm.idle();
    const listsBefore = ssm.calls.get('ListCommandInvocations') ?? 0;

    // Act
    const reported = await gateway.invocations(report.Command!.CommandId!);
    const refused = await gateway.invocations(failed.Command!.CommandId!);
    const cut = await gateway.invocations(loud.Command!.CommandId!);

    // Assert
    expect(ssm.calls.get('ListCommandInvocations')).toBe(listsBefore + 3);
    expect(reported.comment).toBe(comment);
    expect([...reported.results.keys()].sort()).toEqual([...nodes].sort());
    expect(reported.cut).toEqual([]);
    for (const node of nodes) {
      const alone = await invocation(report.Command!.CommandId!, node);
      expect(reported.results.get(node)).toEqual({ state: 'succeeded', stdout: alone.StandardOutputContent });
    }
    expect(reported.results.get(nodes[0]!)).toEqual({
      state: 'succeeded',
      stdout: '{"ok":true,"stage":"install"}\n',
    });
    expect(refused.results.get(nodes[0]!)).toMatchObject({ state: 'failed', stdout: '' });
    expect(cut.results.size).toBe(0);
    expect(cut.cut).toEqual([nodes[0]]);
    expect(await gateway.invocation(loud.Command!.CommandId!, nodes[0]!)).toMatchObject({
      state: 'succeeded',
    });
  });

  it('enforces the 50-instance and 100-character comment limits', async () => {
    const many = Array.from({ length: 51 }, (_, index) => `i-${String(index).padStart(17, '0')}`);

    await expect(send('Echo', many, { name: ['x'] })).rejects.toThrow(/between 1 and 50/);
    await expect(
      send('Echo', [fleet.nodes()[0]!.instanceId], { name: ['x'] }, 'c'.repeat(101)),
    ).rejects.toThrow(/100 characters/);
  });

  it('reports a non-zero exit as Failed and cuts output at 24,000 / 8,000 characters', async () => {
    const node = fleet.nodes()[2]!;
    const failed = await send('Fail', [node.instanceId]);
    const loud = await send('Loud', [node.instanceId]);
    await ssm.idle();

    expect(await invocation(failed.Command!.CommandId!, node.instanceId)).toMatchObject({
      Status: 'Failed',
      ResponseCode: 3,
      StandardErrorContent: 'oops\n',
    });
    const output = await invocation(loud.Command!.CommandId!, node.instanceId);
    expect(output.StandardOutputContent).toHaveLength(24_000);
    expect(output.StandardOutputContent?.endsWith('a--output truncated--')).toBe(true);
    expect(output.StandardErrorContent).toHaveLength(8_000);
    expect(output.StandardErrorContent?.endsWith('b--output truncated--')).toBe(true);
  });

  it('reports an offline node as Undeliverable and a script past its timeout as TimedOut', async () => {
    const offline = fleet.nodes()[3]!;
    offline.setOnline(false);
    const undelivered = await send('Echo', [offline.instanceId], { name: ['x'] });
    const slow = await send('Slow', [fleet.nodes()[4]!.instanceId], { executionTimeout: ['5'] });
    await ssm.idle();
    offline.setOnline(true);

    expect(await invocation(undelivered.Command!.CommandId!, offline.instanceId)).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Undeliverable',
      ResponseCode: -1,
    });
    expect(await invocation(slow.Command!.CommandId!, fleet.nodes()[4]!.instanceId)).toMatchObject({
      Status: 'TimedOut',
      ResponseCode: 137,
    });
  });

  it('holds an offline node’s invocation until it is back, or ends it DeliveryTimedOut', async () => {
    // Generous beside the 100 ms below, so a loaded machine still brings `returning` back in time.
    ssm.knobs.deliveryTimeoutMs = 1_500;
    const [returning, gone] = [fleet.nodes()[3]!, fleet.nodes()[4]!];
    returning.setOnline(false);
    gone.setOnline(false);
    try {
      const waited = await send('Echo', [returning.instanceId], { name: ['back'] });
      const expired = await send('Echo', [gone.instanceId], { name: ['gone'] });
      // A deliberate sleep: the assertion is that the offline node's invocation does NOT end
      // (Undeliverable after undeliverableAfterMs would be the default) while it waits for the node.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(await invocation(waited.Command!.CommandId!, returning.instanceId)).toMatchObject({
        Status: 'Pending',
      });
      returning.setOnline(true);
      await ssm.idle();

      expect(await invocation(waited.Command!.CommandId!, returning.instanceId)).toMatchObject({
        Status: 'Success',
        ResponseCode: 0,
      });
      expect(await invocation(expired.Command!.CommandId!, gone.instanceId)).toMatchObject({
        Status: 'TimedOut',
        StatusDetails: 'DeliveryTimedOut',
        ResponseCode: -1,
      });
    } finally {
      ssm.knobs.deliveryTimeoutMs = undefined;
      returning.setOnline(true);
      gone.setOnline(true);
    }
  });

  it('throttles with ThrottlingException when the API rate is exceeded', async () => {
    ssm.limiter.tps = 1;
    ssm.limiter.burst = 1;
    const calls = Array.from({ length: 4 }, () =>
      client.send(new ListCommandsCommand({})).then(
        () => 'ok',
        (error: Error) => error.name,
      ),
    );
    const outcomes = await Promise.all(calls);
    ssm.limiter.tps = 0;

    expect(outcomes).toContain('ThrottlingException');
  });

  it('keeps every command with its parameters, as ListCommands shows them', async () => {
    const { Commands } = await client.send(new ListCommandsCommand({}));

    expect(Commands?.some((command) => command.Parameters?.name?.[0] === 'nomad')).toBe(true);
  });
});
