import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EC2Client } from '@aws-sdk/client-ec2';
import { AwsServiceError, RateLimiter } from './json-protocol';

const REGION = 'us-east-1';
const API_VERSION = '2016-11-15';
const STATE_CODES: Record<InstanceState, number> = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};
const FILTERS = new Set(['instance-id', 'instance-state-name', 'iam-instance-profile.arn']);

export type InstanceState = 'pending' | 'running' | 'shutting-down' | 'terminated' | 'stopping' | 'stopped';

/** An instance as EC2 holds it. The `aws:` tags and the profile are what only provisioning sets. */
export interface Ec2Instance {
  instanceId: string;
  state: InstanceState;
  privateIpAddress: string;
  instanceProfileArn?: string;
  tags: Record<string, string>;
}

export type Ec2Emulator = Awaited<ReturnType<typeof startEc2Emulator>>;

/**
 * EC2's DescribeInstances for the local world, over EC2's query protocol (form-encoded request, XML
 * answer) so the product's real EC2Client calls it. Filters, paging and errors follow the EC2 API
 * reference: values of one filter are alternatives, filters all apply, `*` and `?` are wildcards,
 * MaxResults (5-1000) cannot be combined with InstanceIds, an unknown id in InstanceIds fails the
 * call with InvalidInstanceID.NotFound. Tags whose key starts with `aws:` cannot be set by a caller;
 * Auto Scaling sets `aws:autoscaling:groupName` when it launches into a group (`launch` here).
 */
export async function startEc2Emulator() {
  const instances = new Map<string, Ec2Instance>();
  const calls = new Map<string, number>();
  const limiter = new RateLimiter();
  const pages = new Map<string, string[]>();

  const describeInstances = (params: URLSearchParams): string => {
    const ids = indexed(params, 'InstanceId');
    const maxResults = params.has('MaxResults') ? Number(params.get('MaxResults')) : undefined;
    if (ids.length > 0 && maxResults !== undefined)
      throw new AwsServiceError(
        'InvalidParameterCombination',
        'The parameter instancesSet cannot be used with the parameter maxResults',
      );
    if (maxResults !== undefined && !(Number.isInteger(maxResults) && maxResults >= 5 && maxResults <= 1000))
      throw new AwsServiceError(
        'InvalidParameterValue',
        `Value ( ${maxResults} ) for parameter maxResults is invalid`,
      );
    const unknown = ids.filter((id) => !instances.has(id));
    if (unknown.length > 0)
      throw new AwsServiceError(
        'InvalidInstanceID.NotFound',
        `The instance IDs '${unknown.join(', ')}' do not exist`,
      );
    const filters = parseFilters(params);
    const token = params.get('NextToken');
    let matching: string[];
    if (token !== null) {
      const remembered = pages.get(token);
      if (remembered === undefined) throw new AwsServiceError('InvalidParameterValue', 'Invalid NextToken');
      matching = remembered;
      pages.delete(token);
    } else {
      const scope = ids.length > 0 ? ids : [...instances.keys()];
      matching = scope.filter((id) => filters.every((filter) => filter.accepts(instances.get(id)!)));
    }
    const size = maxResults ?? matching.length;
    const page = matching.slice(0, size);
    let nextToken: string | undefined;
    if (matching.length > size) {
      nextToken = randomUUID();
      pages.set(nextToken, matching.slice(size));
    }
    const reservations = page
      .map((id) => instances.get(id))
      .filter((instance): instance is Ec2Instance => instance !== undefined)
      .map(reservationXml)
      .join('');
    return `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/${API_VERSION}/"><requestId>${randomUUID()}</requestId><reservationSet>${reservations}</reservationSet>${nextToken ? `<nextToken>${nextToken}</nextToken>` : ''}</DescribeInstancesResponse>`;
  };

  const server: Server = createServer((request, response) => {
    void handle(request).then(({ status, body }) => {
      response.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8' });
      response.end(body);
    });
  });
  const handle = async (request: IncomingMessage): Promise<{ status: number; body: string }> => {
    try {
      if (
        !/^AWS4-HMAC-SHA256 Credential=\S+\/\d{8}\/[a-z0-9-]+\/ec2\/aws4_request/.test(
          String(request.headers.authorization ?? ''),
        )
      )
        throw new AwsServiceError(
          'AuthFailure',
          'AWS was not able to validate the provided access credentials',
          401,
        );
      const chunks: Buffer[] = [];
      for await (const chunk of request) chunks.push(chunk as Buffer);
      const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const action = params.get('Action') ?? '';
      calls.set(action, (calls.get(action) ?? 0) + 1);
      if (!limiter.tryTake())
        throw new AwsServiceError('RequestLimitExceeded', 'Request limit exceeded.', 503);
      if (action !== 'DescribeInstances')
        throw new AwsServiceError('InvalidAction', `The action ${action} is not valid for this web service.`);
      return { status: 200, body: describeInstances(params) };
    } catch (error) {
      const failure =
        error instanceof AwsServiceError ? error : new AwsServiceError('InternalError', String(error), 500);
      return {
        status: failure.status,
        body: `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>${failure.code}</Code><Message>${escapeXml(failure.message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`,
      };
    }
  };
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const instance = (instanceId: string): Ec2Instance => {
    const found = instances.get(instanceId);
    if (found === undefined) throw new Error(`no instance ${instanceId}`);
    return found;
  };

  return {
    endpoint,
    calls,
    limiter,
    client: (config: { maxAttempts?: number } = {}) =>
      new EC2Client({
        endpoint,
        region: REGION,
        credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        maxAttempts: config.maxAttempts ?? 3,
      }),
    /**
     * An instance launched as provisioning would: into an Auto Scaling group (which tags it) and/or
     * with an instance profile, plus ordinary tags.
     */
    launch: (launched: {
      instanceId: string;
      privateIpAddress: string;
      autoScalingGroup?: string;
      instanceProfileArn?: string;
      tags?: Record<string, string>;
      state?: InstanceState;
    }) => {
      assertNoReservedTags(launched.tags ?? {});
      instances.set(launched.instanceId, {
        instanceId: launched.instanceId,
        state: launched.state ?? 'running',
        privateIpAddress: launched.privateIpAddress,
        instanceProfileArn: launched.instanceProfileArn,
        tags: {
          ...launched.tags,
          ...(launched.autoScalingGroup ? { 'aws:autoscaling:groupName': launched.autoScalingGroup } : {}),
        },
      });
    },
    /** CreateTags as anyone with ec2:CreateTags may call it: `aws:` keys are refused. */
    createTags: (instanceId: string, tags: Record<string, string>) => {
      assertNoReservedTags(tags);
      Object.assign(instance(instanceId).tags, tags);
    },
    setState: (instanceId: string, state: InstanceState) => {
      instance(instanceId).state = state;
    },
    instance,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

interface ParsedFilter {
  accepts(instance: Ec2Instance): boolean;
}

function parseFilters(params: URLSearchParams): ParsedFilter[] {
  const filters: ParsedFilter[] = [];
  for (let n = 1; params.has(`Filter.${n}.Name`); n += 1) {
    const name = params.get(`Filter.${n}.Name`)!;
    const values = indexed(params, `Filter.${n}.Value`).map(wildcard);
    if (!FILTERS.has(name) && !name.startsWith('tag:'))
      throw new AwsServiceError('InvalidParameterValue', `The filter '${name}' is invalid`);
    const field = (instance: Ec2Instance): string | undefined => {
      if (name === 'instance-id') return instance.instanceId;
      if (name === 'instance-state-name') return instance.state;
      if (name === 'iam-instance-profile.arn') return instance.instanceProfileArn;
      return instance.tags[name.slice('tag:'.length)];
    };
    filters.push({
      accepts: (instance) => {
        const value = field(instance);
        return value !== undefined && values.some((pattern) => pattern.test(value));
      },
    });
  }
  return filters;
}

/** `Name.1`, `Name.2`, … as the query protocol flattens a list. */
function indexed(params: URLSearchParams, prefix: string): string[] {
  const values: string[] = [];
  for (let n = 1; params.has(`${prefix}.${n}`); n += 1) values.push(params.get(`${prefix}.${n}`)!);
  return values;
}

function wildcard(value: string): RegExp {
  const source = value
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`);
}

function assertNoReservedTags(tags: Record<string, string>): void {
  for (const key of Object.keys(tags))
    if (key.toLowerCase().startsWith('aws:'))
      throw new AwsServiceError(
        'InvalidParameterValue',
        `Tag keys starting with 'aws:' are reserved for internal use: ${key}`,
      );
}

function reservationXml(instance: Ec2Instance): string {
  const tags = Object.entries(instance.tags)
    .map(([key, value]) => `<item><key>${escapeXml(key)}</key><value>${escapeXml(value)}</value></item>`)
    .join('');
  const profile = instance.instanceProfileArn
    ? `<iamInstanceProfile><arn>${escapeXml(instance.instanceProfileArn)}</arn><id>AIPA${instance.instanceId.slice(2, 19).toUpperCase()}</id></iamInstanceProfile>`
    : '';
  const address =
    instance.state === 'terminated'
      ? ''
      : `<privateIpAddress>${instance.privateIpAddress}</privateIpAddress>`;
  return `<item><reservationId>r-${instance.instanceId.slice(2)}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet><item><instanceId>${instance.instanceId}</instanceId><instanceState><code>${STATE_CODES[instance.state]}</code><name>${instance.state}</name></instanceState>${address}${profile}<tagSet>${tags}</tagSet></item></instancesSet></item>`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (char) => `&#${char.charCodeAt(0)};`);
}
