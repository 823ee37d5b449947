import { beginInvocationLog } from '../shared/log-context';
import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { tokenRotationContext } from '../shared/vault-token/context';
import { rotateVaultToken } from '../shared/vault-token/rotation';
import type { InvocationContext } from './context';

/**
 * rotate-token: the Secrets Manager custom rotation function of each cluster's Vault token secret
 * (createSecret, setSecret, testSecret, finishSecret). The secret's rotation rules schedule it every
 * 12 hours; "rotate now" is `aws secretsmanager rotate-secret --secret-id <vault.tokenSecretId>`.
 */
export function rotateTokenHandler(
  runtime: Runtime,
  overrides: Parameters<typeof tokenRotationContext>[1] = {},
) {
  const rotation = tokenRotationContext(runtime, overrides);
  // The context is optional: Secrets Manager's rotation calls in the local world come without one.
  return (event: unknown, context?: InvocationContext) => {
    if (context !== undefined) beginInvocationLog(runtime.logger, context);
    return rotateVaultToken(event, rotation);
  };
}

let lambdaHandler: ReturnType<typeof rotateTokenHandler> | undefined;

export const handler = (event: unknown, context: InvocationContext) => {
  lambdaHandler ??= rotateTokenHandler(lambdaRuntimeFrom(process.env));
  return lambdaHandler(event, context);
};
