import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Duration, Names, RemovalPolicy, Stage, Validations } from 'aws-cdk-lib';
import { Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { type ICommandHooks, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { FunctionNetwork } from './function-network';

/** The repository root: entries live in functions/, and the lock file pins what esbuild bundles. */
const PROJECT_ROOT = join(import.meta.dirname, '..', '..');

/**
 * ESM because shared/documents uses `import.meta.url`, which a CommonJS bundle leaves empty. Bundled
 * dependencies are partly CommonJS, and their `require` of Node built-ins needs a real `require`.
 */
const ESM_REQUIRE_BANNER =
  "import { createRequire as nomadRotatorCreateRequire } from 'node:module'; const require = nomadRotatorCreateRequire(import.meta.url);";

export interface RotatorFunctionProps {
  /** File name in functions/ without extension; it exports `handler`. */
  entry: 'rotate-certs' | 'manual-ops' | 'command-status' | 'instance-state' | 'rotate-token';
  description: string;
  key: IKey;
  environment: Record<string, string>;
  timeout: Duration;
  reservedConcurrentExecutions?: number;
  /** The VPC placement shared by every function; without it the function runs outside any VPC. */
  network?: FunctionNetwork;
  /** Files added to the bundle (name in the task root → content), e.g. configuration too big for the environment. */
  files?: Readonly<Record<string, string>>;
}

/** Where a bundled file lands in the running function: Lambda's task root. */
export const TASK_ROOT = '/var/task';

/**
 * One of the service's Lambda functions: Node.js 22 on arm64, bundled offline by the local esbuild
 * with the AWS SDK inside (the deployed code is the code the tests ran, not the runtime's SDK), its own
 * role with nothing but write access to its own encrypted log group, which keeps 90 days like the
 * table's audit items. With a network, it runs in the VPC's subnets with the functions' security group
 * and its role may manage the network interfaces Lambda creates there (no AWS managed policy).
 */
export class RotatorFunction extends Construct {
  readonly function: NodejsFunction;
  readonly role: Role;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: RotatorFunctionProps) {
    super(scope, id);
    this.role = new Role(this, 'Role', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `${props.entry}: ${props.description}`,
    });
    this.logGroup = new LogGroup(this, 'Logs', {
      encryptionKey: props.key,
      retention: RetentionDays.THREE_MONTHS,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.logGroup.grantWrite(this.role);
    // Before the function: it depends on the role, policy included, so the grant exists when Lambda
    // creates the network interfaces.
    props.network?.grantNetworkInterfaces(this.role);

    this.function = new NodejsFunction(this, 'Function', {
      entry: join(PROJECT_ROOT, 'functions', `${props.entry}.ts`),
      handler: 'handler',
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      description: props.description,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: 512,
      timeout: props.timeout,
      role: this.role,
      logGroup: this.logGroup,
      reservedConcurrentExecutions: props.reservedConcurrentExecutions,
      ...(props.network === undefined
        ? {}
        : {
            vpc: props.network.vpc,
            vpcSubnets: { subnets: [...props.network.subnets] },
            securityGroups: [props.network.securityGroup],
          }),
      environment: { ...props.environment, NODE_OPTIONS: '--enable-source-maps' },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        banner: ESM_REQUIRE_BANNER,
        bundleAwsSDK: true,
        minify: true,
        // Errors are named after their class (ValidationError, ConflictError, ...) in logs and in the
        // invoke response; minified names would say nothing.
        keepNames: true,
        sourceMap: true,
        forceDockerBundling: false,
        ...(props.files === undefined ? {} : { commandHooks: copyIntoBundle(this, props.files) }),
      },
    });
    Validations.of(this.function).acknowledge({
      id: 'AwsSolutions-L1',
      reason:
        'nodejs22.x on purpose: the bundle targets node22, the runtime this code is built and tested for; a newer runtime is adopted as a tested change, not as a side effect of a CDK upgrade.',
    });
  }
}

/**
 * Stage the files in the cloud assembly's directory at synth time and copy them into the bundle after
 * esbuild ran; their content is then part of the asset hash, so a changed file deploys new code.
 */
function copyIntoBundle(scope: Construct, files: Readonly<Record<string, string>>): ICommandHooks {
  const staging = join(Stage.of(scope)!.outdir, 'nomad-rotator-files', Names.uniqueId(scope));
  mkdirSync(staging, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    if (!/^[A-Za-z0-9._-]+$/.test(name))
      throw new Error(`bundled file name ${name}: letters, digits, ".", "_", "-"`);
    writeFileSync(join(staging, name), content);
  }
  return {
    beforeBundling: () => [],
    beforeInstall: () => [],
    afterBundling: (_inputDir, outputDir) =>
      Object.keys(files).map((name) => `cp "${join(staging, name)}" "${join(outputDir, name)}"`),
  };
}
