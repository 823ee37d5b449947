import { lambdaRuntimeFrom, type Runtime } from '../shared/runtime';
import { rotateVaultToken, tokenRotationContext } from '../shared/vault/token-rotation';

/**
 * rotate-token: the Secrets Manager custom rotation function of each cluster's Vault token secret
 * (createSecret, setSecret, testSecret, finishSecret). The secret's rotation rules schedule it every
 * 12 hours; "rotate now" is `aws secretsmanager rotate-secret --secret-id <vault.tokenSecretId>`.
 */
export function rotateTokenHandler(
  runtime: Runtime,
  overrides: Parameters<typeof tokenRotationContext>[1] = {},
) {
  const context = tokenRotationContext(runtime, overrides);
  return (event: unknown) => rotateVaultToken(event, context);
}

let lambdaHandler: ((event: unknown) => Promise<unknown>) | undefined;

export const handler = (event: unknown) => {
  lambdaHandler ??= rotateTokenHandler(lambdaRuntimeFrom(process.env));
  return lambdaHandler(event);
};
