import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeSandbox } from '../../local/node/sandbox';
import { servedCertificateSerial } from '../../local/world/verify';
import { packCertificates } from '../../shared/aws/certificate-commands';
import { rootFingerprints } from '../../shared/documents/fingerprints';
import { DEFAULT_FILES, renderDocument } from './documents';
import type { opensslCa } from './openssl-ca';

type TestCa = Awaited<ReturnType<typeof opensslCa>>;

export interface NodeRotationOptions {
  role?: 'server' | 'client';
  /** Signs the leaves; its intermediate is the chain. */
  ca: TestCa;
  /** What the node is told to trust; by default the signing CA's bundle. */
  caBundle?: string;
  /** The agent certificate's SANs; by default `<role>.global.nomad`, localhost and 127.0.0.1. */
  names?: string;
  /** Install parameters to override (mode, healthTimeoutSeconds, verifyHttpsClient, …). */
  install?: Record<string, string>;
  /**
   * The root fingerprints the install document accepts, as the stack deploys them; by default the
   * roots of the bundle sent, for tests about something else than the trust anchors.
   */
  trustedRoots?: readonly string[];
}

let attempts = 0;
const b64 = (text: string) => Buffer.from(text).toString('base64');

/** One prepare → sign → install round on a node through the real documents, as the rotator runs it. */
export async function rotateOnNode(node: NodeSandbox, options: NodeRotationOptions) {
  attempts += 1;
  const role = options.role ?? 'server';
  const attemptId = `test-${process.pid}-${String(attempts).padStart(6, '0')}`;
  const prepared = await node.runScript({
    script: renderDocument('prepare', { attemptId, ...DEFAULT_FILES }),
    commandId: `prepare-${attemptId}`,
    timeoutSeconds: 60,
  });
  if (prepared.exitCode !== 0) throw new Error(`prepare failed: ${prepared.stdout}${prepared.stderr}`);
  const output = JSON.parse(prepared.stdout) as { agentCsr: string; cliCsr: string };
  const names = options.names ?? `DNS:${role}.global.nomad,DNS:localhost,IP:127.0.0.1`;
  const agent = await options.ca.sign(output.agentCsr, names, 'serverAuth,clientAuth');
  const cli = await options.ca.sign(output.cliCsr, 'DNS:cli.global.nomad', 'clientAuth');
  const caBundle = options.caBundle ?? options.ca.bundle;
  const installed = await node.runScript({
    script: renderDocument(
      'install',
      {
        attemptId,
        role,
        region: 'global',
        mode: 'reload',
        certificates: packCertificates([{ agentCertificatePem: agent.pem, cliCertificatePem: cli.pem }]),
        chain: b64(options.ca.intermediate),
        caBundle: b64(caBundle),
        minimumValiditySeconds: '600',
        healthTimeoutSeconds: '5',
        settleSeconds: '1',
        ...DEFAULT_FILES,
        ...options.install,
      },
      options.trustedRoots ?? rootFingerprints(caBundle),
    ),
    commandId: `install-${attemptId}`,
    timeoutSeconds: 60,
  });
  return {
    agent,
    cli,
    installed,
    result: JSON.parse(installed.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>,
  };
}

/** The serial the node's agent serves, read over mTLS with the node's own CA and CLI files. */
export async function servedSerial(node: NodeSandbox): Promise<string> {
  const read = (path: string) => readFile(join(node.root, path), 'utf8');
  return (
    await servedCertificateSerial(node.httpsPort, {
      ca: await read('opt/nomad/agent-certs/ca.crt'),
      cert: await read('opt/nomad/cli-certs/cli.crt'),
      key: await read('opt/nomad/cli-certs/cli.key'),
    })
  ).toLowerCase();
}
