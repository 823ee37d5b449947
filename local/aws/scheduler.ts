import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ScheduleState = 'ENABLED' | 'DISABLED';

interface Schedule {
  name: string;
  group: string;
  expression: string;
  state: ScheduleState;
}

export type SchedulerEmulator = Awaited<ReturnType<typeof startSchedulerEmulator>>;

/**
 * EventBridge Scheduler's GetSchedule (REST JSON: `GET /schedules/{Name}?groupName=`) for the local
 * world, with SigV4 required as the service requires it. A schedule here is a record and never
 * fires: the world ticks when a test or the demo asks (world.tick()), so what a schedule holds is
 * only what a reader of it sees.
 */
export async function startSchedulerEmulator() {
  const schedules = new Map<string, Schedule>();
  const key = (group: string, name: string) => `${group}/${name}`;

  const answer = (response: ServerResponse, status: number, body: unknown, errorType?: string) => {
    response.writeHead(status, {
      'content-type': 'application/json',
      ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
    });
    response.end(JSON.stringify(body));
  };

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://scheduler');
    if (
      !/^AWS4-HMAC-SHA256 Credential=\S+\/\d{8}\/[a-z0-9-]+\/scheduler\/aws4_request/.test(
        String(request.headers.authorization ?? ''),
      )
    )
      return answer(
        response,
        403,
        { Message: 'Missing Authentication Token' },
        'UnrecognizedClientException',
      );
    const name = /^\/schedules\/([0-9a-zA-Z-_.]{1,64})$/.exec(url.pathname)?.[1];
    if (request.method !== 'GET' || name === undefined)
      return answer(response, 404, { Message: 'Unknown operation' }, 'UnknownOperationException');
    const group = url.searchParams.get('groupName') ?? 'default';
    const schedule = schedules.get(key(group, name));
    if (schedule === undefined)
      return answer(
        response,
        404,
        { Message: `Schedule ${name} does not exist.` },
        'ResourceNotFoundException',
      );
    return answer(response, 200, {
      Arn: `arn:aws:scheduler:us-east-1:123456789012:schedule/${group}/${name}`,
      Name: schedule.name,
      GroupName: schedule.group,
      ScheduleExpression: schedule.expression,
      State: schedule.state,
    });
  };

  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => handle(request, response));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    create: (name: string, group: string, expression: string) =>
      schedules.set(key(group, name), { name, group, expression, state: 'ENABLED' }),
    setState: (name: string, group: string, state: ScheduleState) => {
      const schedule = schedules.get(key(group, name));
      if (schedule === undefined) throw new Error(`no schedule ${group}/${name}`);
      schedule.state = state;
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
