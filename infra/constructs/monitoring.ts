import { ArnFormat, Duration, Stack } from 'aws-cdk-lib';
import {
  Alarm,
  AlarmStatusWidget,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type HorizontalAnnotation,
  type IMetric,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { Topic } from 'aws-cdk-lib/aws-sns';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { caDaysToExpiryThreshold, expiringSoonHours } from '../../shared/certificates/renewal';
import type { ClusterConfig } from '../../shared/config';
import { METRIC, METRICS_NAMESPACE, SERVICE_NAME } from '../../shared/observability';

const PERIOD = Duration.minutes(5);

export interface MonitoringProps {
  key: IKey;
  clusters: readonly ClusterConfig[];
  functions: Record<string, LambdaFunction>;
  deadLetterQueues: Record<string, Queue>;
}

/**
 * Alarms on what the functions emit (Powertools EMF in the NomadRotator namespace, dimensions service
 * and cluster, exactly as shared/observability.ts writes them), on the functions themselves and on every
 * dead-letter queue, all notifying one encrypted topic; and a dashboard of the same metrics.
 */
export class Monitoring extends Construct {
  readonly topic: Topic;
  readonly alarms: Alarm[] = [];
  readonly dashboard: Dashboard;
  readonly #action: SnsAction;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.topic = new Topic(this, 'AlarmTopic', {
      displayName: `${stack.stackName} alarms`,
      masterKey: props.key,
      enforceSSL: true,
    });
    // The topic's own policy replaces the default one, so CloudWatch needs an explicit allow; only
    // this account's alarms may publish.
    this.topic.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [this.topic.topicArn],
        conditions: {
          ArnLike: {
            'aws:SourceArn': stack.formatArn({
              service: 'cloudwatch',
              resource: 'alarm',
              resourceName: '*',
              arnFormat: ArnFormat.COLON_RESOURCE_NAME,
            }),
          },
          StringEquals: { 'aws:SourceAccount': stack.account },
        },
      }),
    );
    this.#action = new SnsAction(this.topic);

    const widgets: GraphWidget[][] = [];
    for (const cluster of props.clusters) widgets.push(this.#clusterAlarms(cluster));
    widgets.push(this.#functionAlarms(props.functions));
    widgets.push(this.#deadLetterAlarms(props.deadLetterQueues));

    this.dashboard = new Dashboard(this, 'Dashboard', {
      dashboardName: stack.stackName,
      defaultInterval: Duration.days(1),
    });
    this.dashboard.addWidgets(
      new AlarmStatusWidget({ title: 'Alarms', alarms: this.alarms, width: 24, height: 4 }),
    );
    for (const row of widgets) this.dashboard.addWidgets(...row);
  }

  #clusterAlarms(cluster: ClusterConfig): GraphWidget[] {
    const name = cluster.name;
    const metric = (metricName: string, statistic: string) =>
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { service: SERVICE_NAME, cluster: name },
        statistic,
        period: PERIOD,
      });
    const pushFailed = metric(METRIC.pushFailed, 'Sum');
    const minHours = metric(METRIC.minHoursToExpiry, 'Minimum');
    const rolloutStuck = metric(METRIC.rolloutStuck, 'Sum');
    const nodeRefused = metric(METRIC.nodeRefused, 'Sum');
    const tokenFailed = metric(METRIC.tokenRotationFailed, 'Sum');
    const caDays = metric(METRIC.caDaysToExpiry, 'Minimum');
    const gossipFailed = metric(METRIC.gossipRotationFailed, 'Sum');
    // The rule the rotator's NodesExpiringSoon metric uses too, so the alarm and the metric agree.
    const threshold = expiringSoonHours(cluster.certificates);
    const caThreshold = caDaysToExpiryThreshold(cluster);

    this.#alarm(`${name}-PushFailed`, {
      metric: pushFailed,
      threshold: 1,
      description: `A certificate install failed on a node of ${name} (the node kept or restored its previous certificates). See the CertificatePushFailed events and the node's lastError in the state table.`,
    });
    this.#alarm(`${name}-MinHoursToExpiry`, {
      metric: minHours,
      threshold,
      comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      // Three ticks in a row: one late tick is not an outage, and hours of margin remain.
      evaluationPeriods: 3,
      // No value means no tick ran or the fleet is empty: either way nobody is renewing certificates.
      treatMissingData: TreatMissingData.BREACHING,
      description: `The soonest-expiring certificate in ${name} has under ${threshold}h left, half the earliest renewal point, or no tick reported the fleet. Check rotate-certs and the RolloutStuck alarm.`,
    });
    this.#alarm(`${name}-RolloutStuck`, {
      metric: rolloutStuck,
      threshold: 1,
      description: `A rollout in ${name} halted: a node ran out of attempts. Its wave finished; fix the node, then start a rotation for it (nomad-rotator rotate).`,
    });
    this.#alarm(`${name}-NodeRefused`, {
      metric: nodeRefused,
      threshold: 1,
      description: `An instance of ${name}'s server Auto Scaling groups or profiles was refused a server certificate: the server set (inventory.serverSet) has no room for it. A replacement beyond the set, or someone launching into the servers' group: see the NodeRefused event and the node's lastError.`,
    });
    this.#alarm(`${name}-CaDaysToExpiry`, {
      metric: caDays,
      threshold: caThreshold,
      comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      // The CA's end does not move when a tick misses: keep the state rather than clear an active alarm
      // (notBreaching would send OK) or page "CA expiring" for a Vault outage, which PushFailed,
      // MinHoursToExpiry and the Errors alarms already report.
      treatMissingData: TreatMissingData.IGNORE,
      description: `The issuing CA of ${name} (the intermediate in ${cluster.vault.pkiMount} that signs every certificate) expires in under ${caThreshold} days. Vault refuses a certificate that would outlive it, so renewals stop one certificate TTL (${cluster.certificates.ttl / 3600}h) before its end. Sign a new intermediate, import it and make it the default issuer of ${cluster.vault.pkiMount}; then reissue.`,
    });
    this.#alarm(`${name}-GossipRotationFailed`, {
      metric: gossipFailed,
      threshold: 1,
      description: `A gossip rollout of ${name} halted. Rotation (GossipRotationHalted): the cluster gossips on a key every server holds; fix the server its reason names, then rotate-gossip again. Repair or staged restart (GossipRepairHalted, GossipRestartHalted): the server it names did not come back; no other server was touched. Enable (GossipEnableHalted): the servers are split between encrypted and clear and autopilot's dead-server cleanup may be off; see the README runbook. Start with nomad-rotator gossip-status --cluster ${name}.`,
    });
    this.#alarm(`${name}-TokenRotationFailed`, {
      metric: tokenFailed,
      threshold: 1,
      description: `The Vault token rotation of ${name} failed or could not revoke the retired token. See rotate-token's log; "rotate now" is aws secretsmanager rotate-secret.`,
    });

    return [
      new GraphWidget({
        title: `${name}: hours to the soonest expiry`,
        left: [minHours],
        leftAnnotations: [
          { value: threshold, label: 'alarm', color: '#d62728' } satisfies HorizontalAnnotation,
        ],
        width: 6,
      }),
      new GraphWidget({
        title: `${name}: certificate pushes`,
        left: [metric(METRIC.pushSucceeded, 'Sum'), pushFailed],
        width: 6,
      }),
      new GraphWidget({
        title: `${name}: nodes expiring soon, rollouts stuck`,
        left: [metric(METRIC.nodesExpiringSoon, 'Maximum'), rolloutStuck],
        width: 6,
      }),
      new GraphWidget({
        title: `${name}: Vault token and gossip key rotation failures`,
        left: [tokenFailed, gossipFailed],
        width: 6,
      }),
      new GraphWidget({
        title: `${name}: days to the issuing CA's expiry`,
        left: [caDays],
        leftAnnotations: [
          { value: caThreshold, label: 'alarm', color: '#d62728' } satisfies HorizontalAnnotation,
        ],
        width: 6,
      }),
    ];
  }

  #functionAlarms(functions: Record<string, LambdaFunction>): GraphWidget[] {
    const errors: IMetric[] = [];
    const throttles: IMetric[] = [];
    const durations: IMetric[] = [];
    for (const [name, fn] of Object.entries(functions)) {
      const fnErrors = fn.metricErrors({ period: PERIOD });
      const fnThrottles = fn.metricThrottles({ period: PERIOD });
      this.#alarm(`${name}-Errors`, {
        metric: fnErrors,
        threshold: 1,
        description: `${name} failed an invocation. Its log group has the error with cluster, rollout and instance.`,
      });
      this.#alarm(`${name}-Throttles`, {
        metric: fnThrottles,
        threshold: 1,
        description: `${name} was throttled: account concurrency is exhausted or, for rotate-certs (reserved concurrency 1), a manual invoke met a running tick.`,
      });
      // Labels only on the graphs: a labelled metric turns an alarm into a metric-math alarm.
      errors.push(fnErrors.with({ label: name }));
      throttles.push(fnThrottles.with({ label: name }));
      durations.push(fn.metricDuration({ period: PERIOD, statistic: 'Maximum', label: name }));
    }
    return [
      new GraphWidget({ title: 'Function errors', left: errors, width: 8 }),
      new GraphWidget({ title: 'Function throttles', left: throttles, width: 8 }),
      new GraphWidget({ title: 'Function duration (max)', left: durations, width: 8 }),
    ];
  }

  #deadLetterAlarms(queues: Record<string, Queue>): GraphWidget[] {
    const depths: IMetric[] = [];
    for (const [name, queue] of Object.entries(queues)) {
      const depth = queue.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum' });
      this.#alarm(`${name}-DeadLetters`, {
        metric: depth,
        threshold: 1,
        description: `Messages reached the ${name} dead-letter queue: events that were never applied. The scheduled tick reconciles nodes; inspect, then purge or redrive the queue.`,
      });
      depths.push(depth.with({ label: name }));
    }
    return [new GraphWidget({ title: 'Dead-letter queue depth', left: depths, width: 24 })];
  }

  #alarm(
    id: string,
    options: {
      metric: IMetric;
      threshold: number;
      description: string;
      comparisonOperator?: ComparisonOperator;
      evaluationPeriods?: number;
      treatMissingData?: TreatMissingData;
    },
  ): void {
    const alarm = new Alarm(this, id, {
      alarmName: `${Stack.of(this).stackName}-${id}`,
      alarmDescription: options.description,
      metric: options.metric,
      threshold: options.threshold,
      comparisonOperator: options.comparisonOperator ?? ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: options.evaluationPeriods ?? 1,
      datapointsToAlarm: options.evaluationPeriods ?? 1,
      treatMissingData: options.treatMissingData ?? TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(this.#action);
    alarm.addOkAction(this.#action);
    this.alarms.push(alarm);
  }
}
