import {
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  ResourceNotFoundException,
  type SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { z } from 'zod';
import type { ClusterConfig } from '../config';
import { formatDuration } from '../duration';
import { NotFoundError, RotatorError, ValidationError } from '../errors';
import { parseOrThrow } from '../validation';
import type { VaultLogin } from '../vault/aws-login';
import type { VaultClient, VaultResponse } from '../vault/client';
import { isVaultAnswer, VaultBadRequestError } from '../vault/errors';
import type { TokenRotationContext } from './context';
import { parseTokenSecret, type TokenSecret, tokenRoleName } from './tokens';

/** The Secrets Manager custom rotation event; steps are camelCase, the token is the new VersionId. */
export const rotationEventSchema = z.looseObject({
  Step: z.enum(['createSecret', 'setSecret', 'testSecret', 'finishSecret']),
  SecretId: z.string().min(1).max(2048),
  ClientRequestToken: z.string().min(32).max(64),
  RotationToken: z.string().min(1).max(256).optional(),
});
export type RotationEvent = z.output<typeof rotationEventSchema>;
export type RotationStep = RotationEvent['Step'];

export interface StepResult {
  cluster: string;
  step: RotationStep;
  version: string;
  outcome: 'done' | 'already-current' | 'already-created' | 'nothing-to-do';
  message: string;
}

/** A rotation step failed; names the step, version and cluster, never a token or an accessor. */
export class TokenRotationError extends RotatorError {}

interface TokenSecretDescription {
  arn: string;
  name: string;
  versions: Record<string, string[]>;
}

/** Run one step of the Vault token secret's rotation: validate, find the cluster, dispatch. */
export async function rotateVaultToken(input: unknown, context: TokenRotationContext): Promise<StepResult> {
  const event = parseOrThrow(rotationEventSchema, input, 'rotation event');
  const secret = await describeSecret(context.secrets, event.SecretId);
  const cluster = context.clusters.find(({ vault }) =>
    [secret.arn, secret.name].includes(vault.tokenSecretId),
  );
  if (cluster === undefined) {
    context.logger.error('no cluster uses this token secret', { secret: secret.name, step: event.Step });
    throw new NotFoundError(`no configured cluster uses token secret ${secret.name}`, {
      context: { secret: secret.name },
    });
  }
  return new VaultTokenRotation(context, cluster).run(event, secret);
}

async function describeSecret(
  secrets: SecretsManagerClient,
  secretId: string,
): Promise<TokenSecretDescription> {
  const described = await secrets.send(new DescribeSecretCommand({ SecretId: secretId }));
  if (described.RotationEnabled === false) {
    throw new ValidationError(`secret ${described.Name ?? secretId} does not have rotation enabled`);
  }
  return {
    arn: described.ARN ?? secretId,
    name: described.Name ?? secretId,
    versions: described.VersionIdsToStages ?? {},
  };
}

interface LookupSelf {
  data: {
    accessor?: string;
    period?: number;
    policies?: string[];
    renewable?: boolean;
    orphan?: boolean;
    explicit_max_ttl?: number;
  };
}

/**
 * One cluster's periodic tls-policy token: minted by the admin role (IAM login, revoked after use)
 * through the cluster's token role, staged as AWSPENDING, tested with its own identity, promoted,
 * and the generation before the previous one revoked by itself (revoke-self): the admin holds no
 * power over other tokens. Every step is idempotent by ClientRequestToken.
 */
class VaultTokenRotation {
  readonly #vault: VaultClient;
  /** Token values and accessors seen in this run, scrubbed from any error text before it leaves. */
  readonly #seen = new Set<string>();

  constructor(
    private readonly context: TokenRotationContext,
    private readonly cluster: ClusterConfig,
  ) {
    this.#vault = context.vaultFor(cluster);
  }

  async run(event: RotationEvent, secret: TokenSecretDescription): Promise<StepResult> {
    const version = event.ClientRequestToken;
    try {
      const stages = secret.versions[version];
      if (stages === undefined) {
        throw new ValidationError(`version ${version} is not a version of secret ${secret.name}`);
      }
      if (stages.includes('AWSCURRENT')) {
        return this.#result(event, 'already-current', 'version is already AWSCURRENT; nothing to do');
      }
      if (!stages.includes('AWSPENDING')) {
        throw new ValidationError(`${event.Step}: version ${version} is not AWSPENDING`);
      }
      switch (event.Step) {
        case 'createSecret':
          return await this.#createSecret(event, secret);
        case 'setSecret':
          return this.#result(event, 'nothing-to-do', 'nothing to push: Vault already holds the token');
        case 'testSecret':
          return await this.#testSecret(event, secret);
        case 'finishSecret':
          return await this.#finishSecret(event, secret);
      }
    } catch (error) {
      throw this.#failed(event, error);
    }
  }

  async #createSecret(event: RotationEvent, secret: TokenSecretDescription): Promise<StepResult> {
    const version = event.ClientRequestToken;
    if ((await this.#pendingSecretString(secret, version)) !== undefined) {
      return this.#result(event, 'already-created', 'version already holds a token; nothing to do');
    }
    const { tokenPolicy, tokenPeriod } = this.cluster.vault.tokenRotation;
    await this.#asAdmin(async (admin) => {
      const minted = await this.#mintPeriodicToken(admin, version);
      try {
        await this.context.secrets.send(
          new PutSecretValueCommand({
            SecretId: secret.arn,
            ClientRequestToken: version,
            SecretString: JSON.stringify(minted),
            VersionStages: ['AWSPENDING'],
            ...(event.RotationToken ? { RotationToken: event.RotationToken } : {}),
          }),
        );
      } catch (error) {
        // Nobody will ever learn this token: it revokes itself rather than stay valid for a period.
        await this.#revokeSelf(minted.token);
        throw error;
      }
    });
    return this.#result(
      event,
      'done',
      `created an orphan periodic token (policy ${tokenPolicy}, period ${formatDuration(tokenPeriod)}) as AWSPENDING`,
    );
  }

  async #mintPeriodicToken(admin: VaultLogin, version: string): Promise<TokenSecret> {
    const { tokenPolicy } = this.cluster.vault.tokenRotation;
    const path = `auth/token/create/${tokenRoleName(this.cluster)}`;
    // The role decides orphan, period, explicit max TTL, bound CIDRs and that tokenPolicy is all it may carry.
    const response = await this.#vault.write<VaultResponse>(
      path,
      {
        policies: [tokenPolicy],
        display_name: `nomad-rotator-${this.cluster.name}`,
        meta: { cluster: this.cluster.name, version },
      },
      admin.token,
    );
    const token = response.auth?.client_token;
    const accessor = response.auth?.accessor;
    if (typeof token !== 'string' || typeof accessor !== 'string') {
      throw new VaultBadRequestError(`Vault ${path} answered without a token`);
    }
    this.#remember(token, accessor);
    return { token, accessor };
  }

  async #testSecret(event: RotationEvent, secret: TokenSecretDescription): Promise<StepResult> {
    const version = event.ClientRequestToken;
    const secretString = await this.#pendingSecretString(secret, version);
    if (secretString === undefined) {
      throw new ValidationError(`testSecret: version ${version} holds no token (createSecret has not run)`);
    }
    const pending = parseTokenSecret(secretString, `${secret.name} version ${version}`);
    this.#remember(pending.token, pending.accessor);
    const problems = await this.#tokenProblems(pending);
    if (problems.length > 0) {
      throw new ValidationError(
        `testSecret: the pending token of version ${version} fails its test`,
        problems,
      );
    }
    return this.#result(
      event,
      'done',
      'pending token has its period, its policy and update on the sign paths',
    );
  }

  /** What is wrong with the token, checked with the token's own identity (lookup-self, capabilities-self). */
  async #tokenProblems(candidate: TokenSecret): Promise<string[]> {
    const { tokenPolicy, tokenPeriod } = this.cluster.vault.tokenRotation;
    const { data } = await this.#vault.read<LookupSelf>('auth/token/lookup-self', candidate.token);
    const problems: string[] = [];
    if (data.accessor !== candidate.accessor)
      problems.push('the stored accessor is not the token’s accessor');
    if (data.period !== tokenPeriod) {
      problems.push(`period is ${data.period ?? 'unset'}s where ${tokenPeriod}s is configured`);
    }
    if (!data.policies?.includes(tokenPolicy)) problems.push(`policy ${tokenPolicy} is not attached`);
    const others = (data.policies ?? []).filter((policy) => policy !== tokenPolicy);
    if (others.length > 0) problems.push(`it carries other policies too: ${others.join(', ')}`);
    if (data.renewable === false) problems.push('the token is not renewable');
    if (data.orphan === false) problems.push('the token is not an orphan: it would die with the admin login');
    if (!data.explicit_max_ttl)
      problems.push('the token has no explicit max TTL: renewed, it would live forever');
    // One path per certificate kind: a token missing any of them would fail that kind's next signing.
    const { pkiMount, serverRole, clientRole, cliRole } = this.cluster.vault;
    const signPaths = [serverRole, clientRole, cliRole].map((role) => `${pkiMount}/sign/${role}`);
    const capabilities = await this.#vault.write<
      Record<string, unknown> & { data?: Record<string, unknown> }
    >('sys/capabilities-self', { paths: signPaths }, candidate.token);
    for (const signPath of signPaths) {
      const granted = capabilities.data?.[signPath] ?? capabilities[signPath];
      if (!Array.isArray(granted) || !granted.includes('update')) {
        problems.push(
          `capabilities on ${signPath} are [${Array.isArray(granted) ? granted.join(', ') : ''}], not update`,
        );
      }
    }
    return problems;
  }

  async #finishSecret(event: RotationEvent, secret: TokenSecretDescription): Promise<StepResult> {
    const version = event.ClientRequestToken;
    const current = versionWithStage(secret, 'AWSCURRENT');
    const previous = versionWithStage(secret, 'AWSPREVIOUS');
    // Read before the move: once AWSCURRENT moves, AWSPREVIOUS shifts and this version loses its label.
    const retired =
      previous === undefined || previous === version ? undefined : await this.#storedToken(secret, previous);
    await this.context.secrets.send(
      new UpdateSecretVersionStageCommand({
        SecretId: secret.arn,
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: version,
        ...(current ? { RemoveFromVersionId: current } : {}),
      }),
    );
    if (retired === undefined) {
      return this.#result(event, 'done', 'moved AWSCURRENT; no older token to revoke');
    }
    try {
      await this.#revokeSelf(retired.token);
    } catch (error) {
      // The rotation itself succeeded; the retired token is no longer renewed by anyone and lapses within
      // one period. Alarm so an operator looks, but do not fail a step that Secrets Manager cannot redo.
      this.context.telemetry.tokenRotationFailed(this.cluster.name);
      this.context.logger.error('could not revoke the retired Vault token', {
        cluster: this.cluster.name,
        retiredVersion: previous,
        error: this.#scrub(error instanceof Error ? error.message : String(error)),
      });
      return this.#result(
        event,
        'done',
        `moved AWSCURRENT; revoking the token of version ${previous} failed`,
      );
    }
    return this.#result(event, 'done', `moved AWSCURRENT; revoked the token of version ${previous}`);
  }

  /** The token a version holds, or undefined when it holds something else (e.g. the initial placeholder). */
  async #storedToken(secret: TokenSecretDescription, version: string): Promise<TokenSecret | undefined> {
    const { SecretString } = await this.context.secrets.send(
      new GetSecretValueCommand({ SecretId: secret.arn, VersionId: version }),
    );
    try {
      const stored = parseTokenSecret(SecretString, `${secret.name} version ${version}`);
      this.#remember(stored.token, stored.accessor);
      return stored;
    } catch {
      this.context.logger.info('retired version holds no Vault token; nothing to revoke', {
        cluster: this.cluster.name,
        retiredVersion: version,
      });
      return undefined;
    }
  }

  async #pendingSecretString(secret: TokenSecretDescription, version: string): Promise<string | undefined> {
    try {
      const { SecretString } = await this.context.secrets.send(
        new GetSecretValueCommand({ SecretId: secret.arn, VersionId: version, VersionStage: 'AWSPENDING' }),
      );
      return SecretString;
    } catch (error) {
      if (error instanceof ResourceNotFoundException) return undefined;
      throw error;
    }
  }

  /** Log in as the admin role for one piece of work, and revoke that login afterwards whatever happened. */
  async #asAdmin<T>(work: (admin: VaultLogin) => Promise<T>): Promise<T> {
    const admin = await this.context.adminLogin(this.cluster, this.#vault);
    this.#remember(admin.token, admin.accessor);
    try {
      return await work(admin);
    } finally {
      await this.#vault.write('auth/token/revoke-self', {}, admin.token).catch((error: unknown) => {
        this.context.logger.warn('could not revoke the admin login; it expires with its short TTL', {
          cluster: this.cluster.name,
          error: this.#scrub(error instanceof Error ? error.message : String(error)),
        });
      });
    }
  }

  /**
   * The token revokes itself. A token Vault no longer accepts (expired, revoked, tidied) answers
   * 403 "invalid token" (Vault ≥ 1.17): nothing is left to revoke. Any other answer, a plain
   * permission denied included, leaves the token valid and is a failure.
   */
  async #revokeSelf(token: string): Promise<void> {
    try {
      await this.#vault.write('auth/token/revoke-self', {}, token);
    } catch (error) {
      if (isVaultAnswer(error, 403, /invalid token/)) return;
      throw error;
    }
  }

  #result(event: RotationEvent, outcome: StepResult['outcome'], message: string): StepResult {
    const result: StepResult = {
      cluster: this.cluster.name,
      step: event.Step,
      version: event.ClientRequestToken,
      outcome,
      message,
    };
    this.context.logger.info(`token rotation ${event.Step}: ${message}`, { ...result });
    return result;
  }

  #failed(event: RotationEvent, error: unknown): TokenRotationError {
    const reason = this.#scrub(error instanceof Error ? error.message : String(error));
    const errorType = error instanceof Error ? error.name : 'Error';
    const context = {
      cluster: this.cluster.name,
      step: event.Step,
      version: event.ClientRequestToken,
      errorType,
    };
    this.context.telemetry.tokenRotationFailed(this.cluster.name);
    this.context.logger.error('Vault token rotation step failed', { ...context, error: reason });
    return new TokenRotationError(
      `${event.Step} of version ${event.ClientRequestToken} for cluster ${this.cluster.name} failed: ${reason}`,
      // Only our own errors travel as the cause: they are secret-free by contract, SDK errors carry requests.
      { context, ...(error instanceof RotatorError ? { cause: error } : {}) },
    );
  }

  #remember(...secrets: string[]): void {
    for (const secret of secrets) this.#seen.add(secret);
  }

  /** Defence in depth: no text leaves a step with a token or accessor in it, whatever produced it. */
  #scrub(text: string): string {
    let scrubbed = text.replace(/\bhv[sbr]\.[A-Za-z0-9_-]+/g, '[token]');
    for (const secret of this.#seen) scrubbed = scrubbed.split(secret).join('[redacted]');
    return scrubbed;
  }
}

function versionWithStage(secret: TokenSecretDescription, stage: string): string | undefined {
  return Object.entries(secret.versions).find(([, stages]) => stages.includes(stage))?.[0];
}
