import { Annotations, Stack, Validations } from 'aws-cdk-lib';
import { type ISubnet, type IVpc, Peer, Port, SecurityGroup, Vpc } from 'aws-cdk-lib/aws-ec2';
import { type IRole, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import type { NetworkConfig } from '../config';
import { ec2WildcardArnAsNagShowsIt } from './node-commands';

/** The port a Vault address is served on: the explicit one, else the scheme's default. */
export function vaultPort(address: string): number {
  const url = new URL(address);
  // URL leaves `port` empty when it is the scheme's default, written or not.
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

const HTTPS = 443;

export interface FunctionNetworkProps {
  network: NetworkConfig;
  /** The addresses of the clusters' Vault servers (vault.address), for the Vault egress rules. */
  vaultAddresses: readonly string[];
}

/**
 * Where the functions run when Vault is private: the configured VPC's subnets (imported by id, no
 * lookup) and one security group of their own, with no ingress and only this egress:
 *
 * - TCP 443 to 0.0.0.0/0: the AWS APIs the functions call (DynamoDB, SSM, Secrets Manager,
 *   EventBridge). Whether they are reached through a NAT gateway or VPC endpoints is the subnets'
 *   routing, not the security group's: interface endpoints and NAT destinations have no address this
 *   stack could know without a lookup. Without one or the other the functions time out.
 * - TCP on each Vault port (from the clusters' vault.address: the explicit port, else 443 for https,
 *   80 for http) to the Vault security group when one is configured, else to 0.0.0.0/0.
 *
 * DNS needs no rule: security groups do not filter traffic to the VPC's Amazon-provided resolver.
 * The Vault security group is referenced, never changed: its owner allows ingress from this one
 * (stack output FunctionSecurityGroupId).
 */
export class FunctionNetwork extends Construct {
  readonly vpc: IVpc;
  readonly subnets: readonly ISubnet[];
  readonly securityGroup: SecurityGroup;
  readonly #network: NetworkConfig;

  constructor(scope: Construct, id: string, props: FunctionNetworkProps) {
    super(scope, id);
    const { network } = props;
    this.#network = network;
    this.vpc = Vpc.fromVpcAttributes(this, 'Vpc', {
      vpcId: network.vpcId,
      availabilityZones: network.availabilityZones,
      privateSubnetIds: network.privateSubnetIds,
    });
    this.subnets = this.vpc.privateSubnets;
    Annotations.of(this.vpc).acknowledgeWarning(
      '@aws-cdk/aws-ec2:noSubnetRouteTableId',
      'The functions need only the subnet ids; nothing in this stack reads or changes their route tables.',
    );

    this.securityGroup = new SecurityGroup(this, 'SecurityGroup', {
      vpc: this.vpc,
      description: 'nomad-rotator functions: no ingress; egress HTTPS to AWS APIs and TCP to Vault',
      allowAllOutbound: false,
      allowAllIpv6Outbound: false,
    });
    this.securityGroup.addEgressRule(
      Peer.anyIpv4(),
      Port.tcp(HTTPS),
      'AWS APIs (DynamoDB, SSM, Secrets Manager, EventBridge) through NAT or VPC endpoints',
    );
    const vault =
      network.vaultSecurityGroupId === undefined
        ? undefined
        : Peer.securityGroupId(network.vaultSecurityGroupId);
    for (const port of [...new Set(props.vaultAddresses.map(vaultPort))].sort((a, b) => a - b)) {
      if (vault !== undefined) {
        this.securityGroup.addEgressRule(vault, Port.tcp(port), `Vault servers on ${port}`);
      } else if (port !== HTTPS) {
        this.securityGroup.addEgressRule(
          Peer.anyIpv4(),
          Port.tcp(port),
          `Vault servers on ${port} (no vaultSecurityGroupId configured)`,
        );
      }
    }
  }

  /**
   * What Lambda needs in a function's execution role to manage the function's network interfaces,
   * granted inline (in place of the AWS managed AWSLambdaVPCAccessExecutionRole, which allows them on
   * every resource): create only in the configured subnets with this security group; delete and
   * (un)assign addresses only on this account's interfaces in this region. The function depends on
   * its role's policy, so CloudFormation creates the grant before the function and deletes it after.
   */
  grantNetworkInterfaces(role: IRole): void {
    const stack = Stack.of(this);
    const ec2Arn = (resource: string, resourceName: string) =>
      stack.formatArn({ service: 'ec2', resource, resourceName });
    const anyInterface = ec2Arn('network-interface', '*');
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ec2:CreateNetworkInterface'],
        resources: [
          anyInterface,
          ...this.#network.privateSubnetIds.map((subnetId) => ec2Arn('subnet', subnetId)),
          ec2Arn('security-group', this.securityGroup.securityGroupId),
        ],
      }),
    );
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: [
          'ec2:DeleteNetworkInterface',
          'ec2:AssignPrivateIpAddresses',
          'ec2:UnassignPrivateIpAddresses',
        ],
        resources: [anyInterface],
      }),
    );
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ec2:DescribeNetworkInterfaces', 'ec2:DescribeSubnets'],
        resources: ['*'],
      }),
    );
    Validations.of(role).acknowledge(
      {
        id: `AwsSolutions-IAM5[Resource::${ec2WildcardArnAsNagShowsIt(stack, 'network-interface/*')}]`,
        reason:
          'EC2 names a network interface only once it exists, so Lambda’s interfaces cannot be listed in advance; creation is further bound to the configured subnets and the functions’ security group, and the ARN to this account and region.',
      },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          'ec2:DescribeNetworkInterfaces and ec2:DescribeSubnets support no resource-level permissions; Lambda needs them to manage the function’s network interfaces, and they only read.',
      },
    );
  }
}
