import { z } from 'zod';
import {
  type ManualOutcome,
  parseManualRequest,
  runManualRequest,
  type VerifiedInvoker,
} from '../shared/certificates/requests';
import {
  ConflictError,
  describeError,
  NotFoundError,
  RotatorError,
  TransientError,
  ValidationError,
} from '../shared/errors';
import { beginInvocationLog } from '../shared/log-context';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { deadlineFrom, type InvocationContext } from './context';

/**
 * The part of a function URL event (payload format 2.0) this handler reads. With AuthType AWS_IAM,
 * Lambda verifies the request's SigV4 signature and authorizes the signer before the function runs,
 * then puts the signer in requestContext.authorizer.iam.
 */
const functionUrlEventSchema = z.looseObject({
  version: z.literal('2.0'),
  body: z.string().optional(),
  isBase64Encoded: z.boolean(),
  requestContext: z.looseObject({
    http: z.looseObject({ method: z.string() }),
    authorizer: z.looseObject({
      iam: z.looseObject({ userArn: z.string().min(1), accountId: z.string().min(1) }),
    }),
  }),
});

/** A function URL response: Lambda sends statusCode, headers and body as the HTTP answer. */
export interface FunctionUrlResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * manual-ops: `plan`, `rotate` and `reissue` for operators, only through the function URL, so every
 * request carries the invoker that AWS authenticated. The invoker is recorded in the audit trail and
 * as the rollout's requester; the body's `requestedBy` is kept only as a claimed label. A bad request
 * is answered 400 with every bad field named, before anything is read from or written to AWS, Vault or
 * the table. This function runs apart from the scheduled tick, with its own reserved concurrency.
 */
export function manualOpsHandler(runtime: Runtime) {
  return async (event: unknown, context: InvocationContext): Promise<FunctionUrlResponse> => {
    beginInvocationLog(runtime.logger, context);
    const call = functionUrlEventSchema.safeParse(event);
    if (!call.success) {
      // A direct Invoke carries no authenticated caller; the stack grants it to no one.
      return answer(
        403,
        failure(
          new ValidationError('manual requests are taken only through the function URL (AWS_IAM)', [
            'requestContext.authorizer.iam.userArn: must be set by the function URL',
          ]),
        ),
      );
    }
    const { requestContext, body, isBase64Encoded } = call.data;
    const invoker: VerifiedInvoker = {
      arn: requestContext.authorizer.iam.userArn,
      accountId: requestContext.authorizer.iam.accountId,
    };
    if (requestContext.http.method !== 'POST') {
      return answer(
        405,
        failure(new ValidationError('invalid manual request', ['method: must be POST with a JSON body'])),
      );
    }
    try {
      const payload = jsonBody(body, isBase64Encoded);
      const request = parseManualRequest(payload, runtime.clusterNames());
      const outcome: ManualOutcome = await runManualRequest(
        { rotation: runtime.rotation(request.cluster), audit: runtime.table, clock: runtime.clock },
        request,
        invoker,
        deadlineFrom(context, runtime.clock),
      );
      return answer(200, outcome);
    } catch (error) {
      const status = statusOf(error);
      if (status === undefined) throw error;
      runtime.logger.warn('manual request refused', { invoker: invoker.arn, error: describeError(error) });
      return answer(status, failure(error as RotatorError));
    }
  };
}

function jsonBody(body: string | undefined, isBase64Encoded: boolean): unknown {
  const text =
    body === undefined ? '' : isBase64Encoded ? Buffer.from(body, 'base64').toString('utf8') : body;
  try {
    return JSON.parse(text);
  } catch {
    throw new ValidationError('invalid manual request', ['body: must be a JSON manual request']);
  }
}

/** Our errors as HTTP statuses; anything else is a fault of this function and fails the invocation. */
function statusOf(error: unknown): number | undefined {
  if (error instanceof ValidationError) return 400;
  if (error instanceof NotFoundError) return 404;
  if (error instanceof ConflictError) return 409;
  if (error instanceof TransientError) return 503;
  return error instanceof RotatorError ? 500 : undefined;
}

/** The body of a refusal, in the shape Lambda gives a function error: our messages carry no secret. */
function failure(error: RotatorError): { errorType: string; errorMessage: string } {
  return { errorType: error.name, errorMessage: error.message };
}

function answer(statusCode: number, body: unknown): FunctionUrlResponse {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

export const handler = (event: unknown, context: InvocationContext) =>
  manualOpsHandler(lambdaRuntimeFrom(process.env))(event, context);
