import type { AttemptRecord, RolloutRecord } from '../rollout/model';
import type { RolloutMilestone, StepOutcome, StepVerdict } from '../rollout/plan';
import { readChange } from './outputs';
import { type ServerByServerDependencies, ServerByServerPlan } from './staged';

export const GOSSIP_RESTART_PLAN = 'gossiprestart';

export type GossipRestartDependencies = ServerByServerDependencies;

/**
 * Staged restarts of a cluster's servers, one per wave in the order the rollout was started with
 * (followers first, the leader last). Each restart runs behind the gate on the server itself:
 * before, every server alive and in the keyring, a leader, and autopilot able to lose one server;
 * after, the server back as a healthy voter and the cluster's failure tolerance restored, held
 * without a break for the stabilization time. A gate that does not open before the restart is
 * tried again after backoff (nothing was touched); a server that does not come back halts the
 * rollout at once with the gossip alarm, so no second server goes down.
 */
export class GossipRestartPlan extends ServerByServerPlan<GossipRestartDependencies> {
  readonly name = GOSSIP_RESTART_PLAN;
  readonly steps = [{ name: 'restart' }] as const;
  /** The gate before the restart did not hold, or the ACL token could not be read: nothing touched. */
  protected readonly untouchedRefusals = ['gate-closed', 'acl-token-unreadable'];
  send(rollout: RolloutRecord, _step: string, attempts: readonly AttemptRecord[], routingKey: string) {
    return this.deps.commands.send(
      'restart',
      attempts.map((attempt) => attempt.target),
      { attemptId: attempts[0]!.token, expectedServers: Number(rollout.settings.servers) },
      routingKey,
    );
  }

  async judge(rollout: RolloutRecord, attempt: AttemptRecord, outcome: StepOutcome): Promise<StepVerdict> {
    if (outcome.state === 'failed') return this.failedVerdict(outcome);
    const read = readChange(outcome.stdout, attempt.token, 'restart');
    if (!read.ok) return { ok: false, reason: read.reason, final: true };
    const { report, change } = read;
    // What the script proved, checked again on its report: its output is the node's to write.
    const servers = Number(rollout.settings.servers);
    if (
      !report.healthy ||
      report.members.alive !== servers ||
      report.autopilot === null ||
      report.autopilot.failureTolerance < 1
    )
      return {
        ok: false,
        reason: `restart-not-proven:${report.members.alive}-of-${servers}-alive`,
        final: true,
      };
    return { ok: true, carry: { wasLeader: change.wasLeader === true } };
  }

  async onSucceeded(rollout: RolloutRecord, attempt: AttemptRecord, result?: Record<string, unknown>) {
    await this.deps.events.publish('GossipServerRestarted', {
      cluster: rollout.cluster,
      rolloutId: rollout.rolloutId,
      instanceId: attempt.target,
      wasLeader: result?.wasLeader === true,
    });
  }

  async announce(rollout: RolloutRecord, milestone: RolloutMilestone, targets: readonly string[]) {
    const base = { cluster: rollout.cluster, rolloutId: rollout.rolloutId };
    if (milestone === 'started') {
      await this.deps.events.publish('GossipRestartStarted', {
        ...base,
        reason: rollout.reason,
        servers: targets,
        ...(typeof rollout.settings.after === 'string' ? { after: rollout.settings.after } : {}),
      });
    } else if (milestone === 'halted') {
      this.deps.telemetry.gossipRotationFailed(rollout.cluster);
      await this.deps.events.publish('GossipRestartHalted', { ...base, reason: rollout.haltReason });
    } else {
      await this.deps.events.publish('GossipRestartFinished', base);
    }
  }
}

/**
 * The order servers restart in: those autopilot does not list as the leader first, the leader
 * last, so the cluster holds one election at most (and none when leadership stays put).
 */
export function followersFirst(servers: readonly { instanceId: string; leaderHere: boolean }[]): string[] {
  return [
    ...servers.filter((server) => !server.leaderHere),
    ...servers.filter((server) => server.leaderHere),
  ].map((server) => server.instanceId);
}
