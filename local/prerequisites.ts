// What the local world needs from the machine, checked before anything starts, so that a missing tool
// is one line naming what to install instead of a failed rotation and a stack trace later on.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface MissingPrerequisite {
  what: string;
  fix: string;
}

/** Debian package names; the shell tools the node sandboxes and the documents use. */
const TOOLS: readonly { command: string; versionArgs: string[]; debianPackage: string }[] = [
  { command: 'bash', versionArgs: ['--version'], debianPackage: 'bash' },
  { command: 'serf', versionArgs: ['version'], debianPackage: 'serf' },
  { command: 'openssl', versionArgs: ['version'], debianPackage: 'openssl' },
  { command: 'curl', versionArgs: ['--version'], debianPackage: 'curl' },
  { command: 'jq', versionArgs: ['--version'], debianPackage: 'jq' },
  { command: 'unshare', versionArgs: ['--version'], debianPackage: 'util-linux' },
  { command: 'ip', versionArgs: ['-V'], debianPackage: 'iproute2' },
];
/** TLS 1.3 and `openssl x509 -ext` first appear in 1.1.1. */
const MINIMUM_OPENSSL: readonly [number, number, number] = [1, 1, 1];

export interface PrerequisiteProbe {
  isRoot(): boolean;
  run(command: string, args: readonly string[]): { ok: boolean; output: string };
  exists(path: string): boolean;
}

const machine: PrerequisiteProbe = {
  isRoot: () => process.getuid?.() === 0,
  run: (command, args) => {
    const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
    return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
  },
  exists: existsSync,
};

export function missingPrerequisites(probe: PrerequisiteProbe = machine): MissingPrerequisite[] {
  const missing: MissingPrerequisite[] = [];
  if (!probe.isRoot()) {
    missing.push({
      what: 'root (node sandboxes run in private mount and network namespaces)',
      fix: 'run as root, e.g. sudo npm run demo',
    });
  }
  const absent = TOOLS.filter((tool) => !probe.run(tool.command, tool.versionArgs).ok);
  if (absent.length > 0) {
    missing.push({
      what: absent.map((tool) => tool.command).join(', '),
      fix: `apt-get install ${[...new Set(absent.map((tool) => tool.debianPackage))].join(' ')}`,
    });
  }
  if (!absent.some((tool) => tool.command === 'openssl')) {
    const version = /OpenSSL (\d+)\.(\d+)\.(\d+)/.exec(probe.run('openssl', ['version']).output);
    const parts = version?.slice(1, 4).map(Number) ?? [0, 0, 0];
    if (compareVersions(parts, MINIMUM_OPENSSL) < 0) {
      missing.push({
        what: `openssl >= ${MINIMUM_OPENSSL.join('.')} (found ${version?.slice(1, 4).join('.') ?? 'an unknown version'})`,
        fix: 'apt-get install openssl',
      });
    }
  }
  if (!probe.exists('/usr/local/sbin')) {
    missing.push({
      what: '/usr/local/sbin (the node shims are mounted over it inside each sandbox)',
      fix: 'mkdir -p /usr/local/sbin',
    });
  }
  if (missing.length === 0 && !probe.run('unshare', ['--mount', '--net', '--', 'true']).ok) {
    missing.push({
      what: 'permission to create mount and network namespaces',
      fix: 'run on a machine or container that allows unshare (CAP_SYS_ADMIN)',
    });
  }
  return missing;
}

/** One line per missing prerequisite, or undefined when the machine has everything. */
export function prerequisitesReport(missing: readonly MissingPrerequisite[]): string | undefined {
  if (missing.length === 0) return undefined;
  return missing.map((item) => `the local world needs ${item.what}: ${item.fix}`).join('\n');
}

function compareVersions(actual: readonly number[], wanted: readonly number[]): number {
  for (let index = 0; index < wanted.length; index += 1) {
    const difference = (actual[index] ?? 0) - (wanted[index] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}
