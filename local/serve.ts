// npm run world: the local world kept running for the operator CLI. It issues the fleet's first
// certificates, prints the environment that points `npx nomad-rotator` at it, and plays EventBridge
// Scheduler with a tick every TICK_SECONDS until Ctrl-C, when it stops every process it started.
import './quiet-sdk-warning';
import 'reflect-metadata';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { describeFailure } from './failure';
import { missingPrerequisites, prerequisitesReport } from './prerequisites';
import { startWorld } from './world';

const WORLD_DIR = resolve('.world');
const TICK_SECONDS = 30;

const say = (text: string) => process.stdout.write(`${text}\n`);

async function main(): Promise<void> {
  await rm(WORLD_DIR, { recursive: true, force: true });
  const world = await startWorld({ baseDir: `${WORLD_DIR}/nodes`, echo: (line) => say(`log: ${line}`) });
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    say('\nstopping the local world');
    clearInterval(timer);
    await world.stop();
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());

  await world.tick();
  await world.settle();
  const exports = Object.entries(world.cliEnvironment())
    .map(([name, value]) => `export ${name}=${value}`)
    .join('\n');
  say(`local world up: cluster "${world.cluster.name}", ${world.fleet.nodes().length} nodes issued`);
  say(`node files under ${WORLD_DIR}/nodes/<instance-id>/opt/nomad/\n`);
  say(`in another shell:\n${exports}\nnpx nomad-rotator status --cluster ${world.cluster.name}\n`);
  say(`a scheduled tick runs every ${TICK_SECONDS} s; Ctrl-C stops the world`);

  let ticking = false;
  timer = setInterval(() => {
    if (ticking || stopping) return;
    ticking = true;
    void world
      .tick()
      .then(() => world.settle())
      .catch((error: unknown) =>
        say(`tick failed: ${error instanceof Error ? error.message : String(error)}`),
      )
      .finally(() => {
        ticking = false;
      });
  }, TICK_SECONDS * 1000);
}

const missing = prerequisitesReport(missingPrerequisites());
if (missing !== undefined) {
  process.stderr.write(`${missing}\n`);
  process.exitCode = 2;
} else {
  main().catch((error: unknown) => {
    process.stderr.write(`world failed: ${describeFailure(error)}\n`);
    process.exitCode = 1;
  });
}
