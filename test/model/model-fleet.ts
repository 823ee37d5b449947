import type { CommandGateway, InvocationListing, InvocationOutcome } from '../../shared/aws/ports';
import type { InventoryNode, NodeInventory, ProvisionedNode } from '../../shared/certificates/ports';
import type { ClusterConfig } from '../../shared/config';
import { installExecutionTimeoutSeconds } from '../../shared/documents';
import { parseRoutingKey } from '../../shared/rollout/routing';
import { assertAlive, currentActor } from './crash';
import type {
  DispatchRequest,
  FakeNode,
  FinishOutcome,
  InstalledSet,
  Invocation,
  KeyPairIndex,
  SentCommand,
  Step,
} from './fleet-state';
import { CONFIGS, PREPARE_EXECUTION_TIMEOUT_MS, SECOND, startingNodes } from './fleets';
import type { CsrPool, IssuedFact } from './model-authority';
import type { ModelWorld } from './model-world';

/** SSM, its inventory and the nodes, in process: invocations stay running until the schedule finishes them. */
export class ModelFleet implements NodeInventory, CommandGateway {
  readonly nodes = new Map<string, FakeNode>();
  readonly commands: SentCommand[] = [];
  /**
   * Command status-change events nobody has delivered (or dropped) yet: SSM emits a command's final
   * one when its last invocation ends.
   */
  readonly undelivered: { commandId: string; status: 'Success' | 'Failed' }[] = [];
  /** Normalized serial → the attempt id of the install that carried it. */
  readonly tokenOfSerial = new Map<string, string>();
  throttleNextSends = 0;
  /** Serials an emergency install replaced on a node: each must end revoked. */
  readonly replacedInEmergency = new Set<string>();
  readonly #byId = new Map<string, SentCommand>();
  readonly #running: Invocation[] = [];
  readonly #sentKeys = new Map<string, SentCommand[]>();
  #keyCounter = 0;

  constructor(
    private readonly world: ModelWorld,
    private readonly pool: CsrPool,
  ) {
    for (const node of startingNodes()) this.nodes.set(node.instanceId, node);
  }

  nodesOf(cluster: string): FakeNode[] {
    return [...this.nodes.values()].filter((node) => node.cluster === cluster);
  }

  async list(cluster: ClusterConfig): Promise<InventoryNode[]> {
    return this.nodesOf(cluster.name)
      .filter((node) => !node.terminated)
      .map(({ instanceId, role, ip, online }) => ({ instanceId, role, ip, online }));
  }

  async identify(cluster: ClusterConfig, instanceId: string): Promise<ProvisionedNode | undefined> {
    const node = this.nodes.get(instanceId);
    if (node === undefined || node.cluster !== cluster.name || node.terminated) return undefined;
    return { instanceId, role: node.role, ip: node.ip };
  }

  async send(): Promise<string> {
    throw new Error('the model sends through its CertificateCommands, never the raw gateway');
  }

  async invocation(commandId: string, instanceId: string): Promise<InvocationOutcome & { comment?: string }> {
    this.expire();
    const command = this.#byId.get(commandId);
    const invocation = command?.invocations.get(instanceId);
    if (command === undefined || invocation === undefined) return { state: 'missing' };
    const comment = command.routingKey;
    if (invocation.state === 'running') return { state: 'running', comment };
    if (invocation.state === 'succeeded') return { state: 'succeeded', stdout: invocation.stdout, comment };
    return { state: 'failed', detail: invocation.detail, stdout: invocation.stdout, comment };
  }

  async invocations(commandId: string): Promise<InvocationListing> {
    const command = this.#byId.get(commandId);
    if (command === undefined) return { results: new Map(), cut: [] };
    const results = new Map<string, InvocationOutcome>();
    for (const target of command.invocations.keys()) {
      const { comment: _, ...outcome } = await this.invocation(commandId, target);
      results.set(target, outcome);
    }
    return { comment: command.routingKey, results, cut: [] };
  }

  async findSent(instanceId: string, comment: string, since: number): Promise<string | undefined> {
    return this.commands.find(
      (command) =>
        command.sentAt >= since && command.routingKey === comment && command.targets.includes(instanceId),
    )?.commandId;
  }

  running(): readonly Invocation[] {
    this.expire();
    return this.#running;
  }

  /** The agent kills a command at its executionTimeout; SSM then reports it failed. */
  expire(): void {
    const now = this.world.clock.now();
    for (const invocation of [...this.#running]) {
      const command = this.#byId.get(invocation.commandId)!;
      if (now >= command.killAt) this.#finishWith(invocation, 'failed', '', 'ExecutionTimedOut');
    }
  }

  dispatch(cluster: string, step: Step, targets: readonly string[], request: DispatchRequest): string {
    assertAlive();
    if (this.throttleNextSends > 0) {
      this.throttleNextSends -= 1;
      const error = new Error('Rate exceeded');
      error.name = 'ThrottlingException';
      throw error;
    }
    this.expire();
    this.#checkDispatch(cluster, step, targets, request);
    const actor = currentActor();
    if (actor?.crashAfterSend === true) actor.dyingAfterSend = true;
    const now = this.world.clock.now();
    const commandId = `cmd-${String(this.commands.length + 1).padStart(5, '0')}`;
    const killAt =
      now +
      (step === 'install'
        ? installExecutionTimeoutSeconds(
            CONFIGS.get(cluster)!.rollout.serverHealthTimeoutSeconds,
            CONFIGS.get(cluster)!.nomad.settleSeconds,
          ) * SECOND
        : PREPARE_EXECUTION_TIMEOUT_MS);
    const command: SentCommand = {
      commandId,
      cluster,
      routingKey: request.routingKey,
      step,
      targets: [...targets],
      attemptId: request.attemptId,
      mode: request.mode ?? 'reload',
      sentAt: now,
      killAt,
      pairs: request.pairs ?? [],
      invocations: new Map(),
      recorded: new Set(),
    };
    for (const target of targets) {
      const invocation: Invocation = { commandId, target, state: 'running', stdout: '', detail: '' };
      command.invocations.set(target, invocation);
      this.#running.push(invocation);
      const key = `${cluster}|${request.attemptId}|${step}|${target}`;
      this.#sentKeys.set(key, [...(this.#sentKeys.get(key) ?? []), command]);
    }
    for (const pair of command.pairs) {
      const agent = this.world.authority.lookup(pair.agentCertificatePem);
      if (agent !== undefined) this.tokenOfSerial.set(agent.serial, request.attemptId);
    }
    this.commands.push(command);
    this.#byId.set(commandId, command);
    this.world.stats.commands += 1;
    if (step === 'install')
      this.world.stats.serverInstalls += targets.filter((id) => this.nodes.get(id)?.role === 'server').length;
    return commandId;
  }

  /** An attempt item now names this command: its send is no longer an orphan. */
  recorded(commandId: string, target: string): void {
    this.#byId.get(commandId)?.recorded.add(target);
  }

  /** The node runs the command to the end (or SSM gives up delivering it to an offline node). */
  finish(invocation: Invocation, outcome: FinishOutcome): void {
    if (invocation.state !== 'running') return;
    const command = this.#byId.get(invocation.commandId)!;
    const node = this.nodes.get(invocation.target)!;
    if (!node.online || node.terminated) {
      this.#finishWith(invocation, 'failed', '', 'Undeliverable');
    } else if (command.step === 'prepare') {
      this.#finishPrepare(invocation, command, node, outcome);
    } else {
      this.#finishInstall(invocation, command, node, outcome);
    }
  }

  terminate(id: string): void {
    const node = this.nodes.get(id)!;
    node.terminated = true;
    node.online = false;
    for (const invocation of [...this.#running]) {
      if (invocation.target === id) this.#finishWith(invocation, 'failed', '', 'Undeliverable');
    }
  }

  #finishPrepare(invocation: Invocation, command: SentCommand, node: FakeNode, outcome: FinishOutcome): void {
    if (outcome === 'failure') {
      const stdout = JSON.stringify({
        ok: false,
        stage: 'prepare',
        reason: 'key-generation-failed',
        attemptId: command.attemptId,
      });
      this.#finishWith(invocation, 'failed', stdout, 'Failed');
      return;
    }
    // As the script: the same attempt id reuses the pending keys, another one replaces them.
    if (node.pending?.attemptId !== command.attemptId) {
      node.pending = { attemptId: command.attemptId, keys: this.#freshKeys(node) };
    }
    const current = (fact: IssuedFact | undefined) =>
      fact === undefined
        ? null
        : { serial: fact.serial.toUpperCase(), notAfter: Math.floor(fact.notAfter / SECOND) };
    const stdout = JSON.stringify({
      ok: true,
      stage: 'prepare',
      attemptId: command.attemptId,
      agentCsr: this.pool.derBase64[node.pending.keys.agent],
      cliCsr: this.pool.derBase64[node.pending.keys.cli],
      current: { agent: current(node.installed?.agent), cli: current(node.installed?.cli) },
    });
    this.#finishWith(invocation, 'succeeded', `generating keys\n${stdout}\n`, '');
  }

  #finishInstall(invocation: Invocation, command: SentCommand, node: FakeNode, outcome: FinishOutcome): void {
    const refuse = (reason: string, touched: boolean) =>
      this.#finishWith(
        invocation,
        'failed',
        JSON.stringify({
          ok: false,
          stage: 'install',
          attemptId: command.attemptId,
          reason,
          touched,
          restored: touched,
        }),
        'Failed',
      );
    if (outcome === 'failure') {
      refuse('new-certificate-not-served', true);
      return;
    }
    const certificates = command.pairs
      .flatMap((pair) => [pair.agentCertificatePem, pair.cliCertificatePem])
      .map((pem) => this.world.authority.lookup(pem))
      .filter((fact): fact is IssuedFact => fact !== undefined);
    const forKey = (key: number) => certificates.find((fact) => fact.key === key);
    let chosen: InstalledSet | undefined;
    if (node.pending?.attemptId === command.attemptId) {
      const agent = forKey(node.pending.keys.agent);
      const cli = forKey(node.pending.keys.cli);
      if (agent !== undefined && cli !== undefined) chosen = { keys: node.pending.keys, agent, cli };
    }
    if (chosen === undefined && node.installed !== undefined) {
      // A re-run after success: the batch holds certificates for the keys the node already runs.
      const agent = forKey(node.installed.keys.agent);
      const cli = forKey(node.installed.keys.cli);
      if (agent !== undefined && cli !== undefined) chosen = { keys: node.installed.keys, agent, cli };
    }
    if (chosen === undefined) {
      refuse('no-certificate-for-this-node', false);
      return;
    }
    const changed =
      node.installed?.agent.serial !== chosen.agent.serial ||
      node.installed?.cli.serial !== chosen.cli.serial;
    if (changed && command.mode === 'restart' && node.installed !== undefined) {
      this.replacedInEmergency.add(node.installed.agent.serial);
      this.replacedInEmergency.add(node.installed.cli.serial);
    }
    if (chosen.keys === node.pending?.keys) node.pending = undefined;
    node.installed = chosen;
    const facts = (fact: IssuedFact) => ({
      serial: fact.serial.toUpperCase(),
      notBefore: Math.floor(fact.notBefore / SECOND),
      notAfter: Math.floor(fact.notAfter / SECOND),
    });
    const stdout = JSON.stringify({
      ok: true,
      stage: 'install',
      attemptId: command.attemptId,
      changed,
      action: changed ? command.mode : 'none',
      servedSerial: chosen.agent.serial.toUpperCase(),
      agent: facts(chosen.agent),
      cli: facts(chosen.cli),
    });
    this.#finishWith(invocation, 'succeeded', stdout, '');
  }

  #finishWith(invocation: Invocation, state: 'succeeded' | 'failed', stdout: string, detail: string): void {
    invocation.state = state;
    invocation.stdout = stdout;
    invocation.detail = detail;
    this.#running.splice(this.#running.indexOf(invocation), 1);
    const all = [...this.#byId.get(invocation.commandId)!.invocations.values()];
    if (all.some((each) => each.state === 'running')) return;
    const status = all.every((each) => each.state === 'succeeded') ? 'Success' : 'Failed';
    this.undelivered.push({ commandId: invocation.commandId, status });
  }

  /** Keys unlike any the node holds, so a certificate for an older key never matches by accident. */
  #freshKeys(node: FakeNode): KeyPairIndex {
    const taken = new Set([
      node.installed?.keys.agent,
      node.installed?.keys.cli,
      node.pending?.keys.agent,
      node.pending?.keys.cli,
    ]);
    const next = () => {
      let key: number;
      do {
        key = this.#keyCounter % this.pool.derBase64.length;
        this.#keyCounter += 1;
      } while (taken.has(key));
      taken.add(key);
      return key;
    };
    return { agent: next(), cli: next() };
  }

  /** At the moment of sending: one server install at a time, no step sent twice, no other cluster's node. */
  #checkDispatch(cluster: string, step: Step, targets: readonly string[], request: DispatchRequest): void {
    const { violations } = this.world;
    const key = parseRoutingKey(request.routingKey);
    if (key === undefined) {
      violations.push(`${step} sent with an unparseable routing key ${request.routingKey}`);
    } else {
      if (key.cluster !== cluster)
        violations.push(`${cluster} sent ${step} under the routing key of ${key.cluster}`);
      if (key.step !== step) violations.push(`${step} sent under the routing key of step ${key.step}`);
      if (key.token !== request.attemptId)
        violations.push(`${step} sent with attempt id ${request.attemptId} under token ${key.token}`);
    }
    for (const target of targets) {
      const node = this.nodes.get(target);
      if (node?.cluster !== cluster)
        violations.push(`${cluster} sent ${step} to ${target}, a node of ${node?.cluster ?? 'no cluster'}`);
      const sentKey = `${cluster}|${request.attemptId}|${step}|${target}`;
      const earlier = this.#sentKeys.get(sentKey) ?? [];
      if (earlier.some((command) => command.recorded.has(target))) {
        violations.push(
          `${step} of attempt ${request.attemptId} sent to ${target} twice (${earlier.map((c) => c.commandId).join(', ')} recorded)`,
        );
      } else if (earlier.length > 0) {
        this.world.stats.resendsAfterCrash += 1;
      }
    }
    if (step === 'install' && (request.pairs?.length ?? 0) !== targets.length) {
      violations.push(`install to ${targets.length} target(s) carried ${request.pairs?.length ?? 0} pair(s)`);
    }
    if (step !== 'install') return;
    for (const target of targets) {
      if (this.nodes.get(target)?.role !== 'server') continue;
      for (const invocation of this.#running) {
        const other = this.nodes.get(invocation.target)!;
        const command = this.#byId.get(invocation.commandId)!;
        if (command.step !== 'install' || other.role !== 'server' || other.cluster !== cluster) continue;
        if (other.instanceId === target) continue;
        violations.push(
          `${cluster}: install to server ${target} sent while server ${other.instanceId} still runs install ${command.commandId} (sent ${(this.world.clock.now() - command.sentAt) / SECOND}s ago)`,
        );
      }
    }
  }
}
