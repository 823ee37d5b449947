import { Stack, Token, Validations } from 'aws-cdk-lib';
import { PolicyStatement, type Role } from 'aws-cdk-lib/aws-iam';
import { CfnDocument } from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { AUTO_SCALING_GROUP_TAG } from '../../shared/certificates/identity';
import type { ClusterConfig } from '../../shared/config';
import { commandDocument, type DocumentKind } from '../../shared/documents';

export interface NodeCommandsProps {
  clusters: readonly ClusterConfig[];
}

/**
 * The node-side SSM Command documents, deployed from the very objects the local world runs, and
 * the permission to run them: only these documents, only on EC2 instances tagged as a node of a
 * configured cluster.
 */
export class NodeCommands extends Construct {
  readonly prepare: CfnDocument;
  readonly install: CfnDocument;
  readonly gossip: CfnDocument;
  readonly #clusters: readonly ClusterConfig[];

  constructor(scope: Construct, id: string, props: NodeCommandsProps) {
    super(scope, id);
    this.#clusters = props.clusters;
    this.prepare = this.#document('Prepare', 'prepare');
    this.install = this.#document('Install', 'install');
    this.gossip = this.#document('Gossip', 'gossip');
  }

  /** Names as SendCommand takes them and as SSM's command events carry them (`document-name`). */
  get documentNames(): Record<DocumentKind, string> {
    return { prepare: this.prepare.ref, install: this.install.ref, gossip: this.gossip.ref };
  }

  /**
   * Run the documents on the clusters' nodes and read the results back: SendCommand, then
   * ListCommandInvocations for a command's outputs (GetCommandInvocation for one the listing cut),
   * and for the inventory DescribeInstances (membership, role, IP) with DescribeInstanceInformation
   * (ping status).
   */
  grantRun(role: Role): void {
    const stack = Stack.of(this);
    const documentArn = (name: string) =>
      stack.formatArn({ service: 'ssm', resource: 'document', resourceName: name });
    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: ['ssm:SendCommand'],
        resources: Object.values(this.documentNames).map(documentArn),
      }),
    );
    // SendCommand is authorized on the document and on every target instance. The instance side holds
    // only for the clusters' Auto Scaling groups (a tag no caller can set); a role identified by
    // instance profile alone falls back to the cluster tag, as IAM has no instance-profile condition
    // for SSM. Either way a stray id in a request is refused by IAM, not only by our code.
    const groups = new Set<string>();
    const namesByTagKey = new Map<string, string[]>();
    for (const cluster of this.#clusters) {
      for (const role of [cluster.inventory.servers, cluster.inventory.clients]) {
        for (const group of role.autoScalingGroups) groups.add(group);
        if (role.autoScalingGroups.length === 0) {
          const names = namesByTagKey.get(cluster.inventory.clusterTagKey) ?? [];
          if (!names.includes(cluster.name))
            namesByTagKey.set(cluster.inventory.clusterTagKey, [...names, cluster.name]);
        }
      }
    }
    const instances = [stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })];
    if (groups.size > 0)
      role.addToPrincipalPolicy(
        new PolicyStatement({
          actions: ['ssm:SendCommand'],
          resources: instances,
          conditions: { StringEquals: { [`ssm:resourceTag/${AUTO_SCALING_GROUP_TAG}`]: [...groups] } },
        }),
      );
    for (const [tagKey, names] of namesByTagKey) {
      role.addToPrincipalPolicy(
        new PolicyStatement({
          actions: ['ssm:SendCommand'],
          resources: instances,
          conditions: { StringEquals: { [`ssm:resourceTag/${tagKey}`]: names } },
        }),
      );
    }
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${ec2WildcardArnAsNagShowsIt(stack, 'instance/*')}]`,
      reason:
        "SendCommand authorizes every target instance, so the instances are resources; the statements hold only with ssm:resourceTag/aws:autoscaling:groupName equal to a configured cluster's Auto Scaling group (or, for roles identified by instance profile, the cluster tag).",
    });

    role.addToPrincipalPolicy(
      new PolicyStatement({
        actions: [
          'ssm:GetCommandInvocation',
          'ssm:ListCommandInvocations',
          'ssm:DescribeInstanceInformation',
          'ec2:DescribeInstances',
        ],
        resources: ['*'],
      }),
    );
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'ssm:GetCommandInvocation, ssm:ListCommandInvocations, ssm:DescribeInstanceInformation and ec2:DescribeInstances have no resource-level permissions; they only read command results, the SSM ping status and the instances whose provisioning makes them nodes.',
    });
  }

  #document(id: string, kind: DocumentKind): CfnDocument {
    return new CfnDocument(this, id, {
      documentType: 'Command',
      documentFormat: 'JSON',
      targetType: '/AWS::EC2::Instance',
      // The install carries each cluster's accepted root CAs: a new root is a new document version.
      content: commandDocument(kind, this.#clusters),
      // A new default version keeps the name, so in-flight commands' events still match the rule.
      updateMethod: 'NewVersion',
    });
  }
}

/**
 * Every EC2 resource of a type in the stack's account and region (`instance/*`), the way cdk-nag
 * names the ARN in a finding: unresolved parts as <AWS::Pseudo>.
 */
export function ec2WildcardArnAsNagShowsIt(stack: Stack, resource: string): string {
  const part = (value: string, pseudo: string) => (Token.isUnresolved(value) ? `<AWS::${pseudo}>` : value);
  return `arn:${part(stack.partition, 'Partition')}:ec2:${part(stack.region, 'Region')}:${part(stack.account, 'AccountId')}:${resource}`;
}
