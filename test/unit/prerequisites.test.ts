import { describe, expect, it } from 'vitest';
import { missingPrerequisites, type PrerequisiteProbe, prerequisitesReport } from '../../local/prerequisites';

const probe = (overrides: {
  root?: boolean;
  absent?: string[];
  opensslVersion?: string;
  namespaces?: boolean;
}): PrerequisiteProbe => ({
  isRoot: () => overrides.root ?? true,
  exists: () => true,
  run: (command, args) => {
    if (overrides.absent?.includes(command)) return { ok: false, output: '' };
    if (command === 'openssl')
      return { ok: true, output: `OpenSSL ${overrides.opensslVersion ?? '3.0.19'} 27 Jan 2026` };
    if (command === 'unshare' && args.includes('--net'))
      return { ok: overrides.namespaces ?? true, output: '' };
    return { ok: true, output: '' };
  },
});

describe('local world prerequisites', () => {
  it('say nothing on a machine that has everything', () => {
    expect(prerequisitesReport(missingPrerequisites(probe({})))).toBeUndefined();
  });

  it('name every missing tool and the one apt-get line that installs them', () => {
    const report = prerequisitesReport(missingPrerequisites(probe({ absent: ['serf', 'jq', 'ip'] })));

    expect(report).toBe('the local world needs serf, jq, ip: apt-get install serf jq iproute2');
  });

  it('refuse an openssl older than 1.1.1 and a user who is not root, one line each', () => {
    const report = prerequisitesReport(missingPrerequisites(probe({ root: false, opensslVersion: '1.1.0' })));

    expect(report?.split('\n')).toEqual([
      'the local world needs root (node sandboxes run in private mount and network namespaces): run as root, e.g. sudo npm run demo',
      'the local world needs openssl >= 1.1.1 (found 1.1.0): apt-get install openssl',
    ]);
  });

  it('say so when the machine does not allow namespaces', () => {
    expect(prerequisitesReport(missingPrerequisites(probe({ namespaces: false })))).toMatch(
      /permission to create mount and network namespaces/,
    );
  });
});
