import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import { normalizeSerial } from '../../shared/certificates/outputs';
import type { ClusterConfig } from '../../shared/config';
import type { NodeRecord } from '../../shared/state/records';

const run = promisify(execFile);

export interface NodeUnderTest {
  instanceId: string;
  root: string;
  httpsPort: number;
}

export interface NodeVerdict {
  instanceId: string;
  servedSerial?: string;
  problems: string[];
}

/**
 * What "a node ends with a valid, matching, served certificate" means, checked from outside the
 * node: the files on disk match each other and the record, chain to ca.crt (real openssl), carry the
 * role's names and usages, keys are not readable by others, and an mTLS handshake made with the
 * node's own CLI certificate is answered with the recorded serial.
 */
export async function verifyNode(
  cluster: ClusterConfig,
  node: NodeUnderTest,
  record: NodeRecord | undefined,
): Promise<NodeVerdict> {
  const problems: string[] = [];
  const file = (path: string) => join(node.root, path);
  const paths = cluster.files;
  const [agentCert, agentKey, ca, cliCert, cliKey] = await Promise.all(
    [paths.agentCert, paths.agentKey, paths.ca, paths.cliCert, paths.cliKey].map((spec) =>
      readFile(file(spec.path), 'utf8').catch(() => undefined),
    ),
  );
  if (!agentCert || !agentKey || !ca || !cliCert || !cliKey) {
    return { instanceId: node.instanceId, problems: ['certificate files missing'] };
  }
  const leaf = new X509Certificate(agentCert);
  const cli = new X509Certificate(cliCert);
  if (!samePublicKey(leaf, agentKey)) problems.push('agent.key does not match agent.crt');
  if (!samePublicKey(cli, cliKey)) problems.push('cli.key does not match cli.crt');
  if (
    record?.agent === undefined ||
    normalizeSerial(leaf.serialNumber) !== normalizeSerial(record.agent.serial)
  ) {
    problems.push('agent.crt is not the certificate the state table records');
  }
  for (const [name, spec] of [
    ['agent', paths.agentCert],
    ['cli', paths.cliCert],
  ] as const) {
    // The certificate file holds the leaf followed by its chain, so it also serves as -untrusted.
    const verdict = await run('openssl', [
      'verify',
      '-CAfile',
      file(paths.ca.path),
      '-untrusted',
      file(spec.path),
      file(spec.path),
    ]).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
    if (!verdict.stdout.includes(': OK')) problems.push(`${name} certificate does not chain to ca.crt`);
  }
  const role = record?.role ?? 'client';
  if (!(leaf.subjectAltName ?? '').split(', ').includes(`DNS:${role}.${cluster.region}.nomad`)) {
    problems.push(`agent certificate lacks DNS:${role}.${cluster.region}.nomad`);
  }
  if (!(cli.subjectAltName ?? '').split(', ').includes(`DNS:cli.${cluster.region}.nomad`)) {
    problems.push('CLI certificate lacks its name');
  }
  const usages = leaf.toLegacyObject().ext_key_usage ?? [];
  if (!usages.includes('1.3.6.1.5.5.7.3.1') || !usages.includes('1.3.6.1.5.5.7.3.2')) {
    problems.push('agent certificate lacks serverAuth + clientAuth');
  }
  for (const spec of [paths.agentKey, paths.cliKey]) {
    const mode = (await stat(file(spec.path))).mode & 0o777;
    if (mode !== Number.parseInt(spec.mode, 8)) problems.push(`${spec.path} has mode ${mode.toString(8)}`);
  }
  let servedSerial: string | undefined;
  try {
    servedSerial = await servedCertificateSerial(node.httpsPort, { ca, cert: cliCert, key: cliKey });
    if (normalizeSerial(servedSerial) !== normalizeSerial(leaf.serialNumber))
      problems.push('the agent serves another certificate');
  } catch (error) {
    problems.push(`mTLS handshake with the CLI certificate failed: ${(error as Error).message}`);
  }
  return { instanceId: node.instanceId, ...(servedSerial ? { servedSerial } : {}), problems };
}

/** The serial the agent presents to a client authenticating with the given certificate. */
export function servedCertificateSerial(
  port: number,
  credentials: { ca: string; cert: string; key: string },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ...credentials }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial);
    });
    socket.setTimeout(5_000, () => socket.destroy(new Error('timeout')));
    socket.on('error', reject);
  });
}

function samePublicKey(certificate: X509Certificate, keyPem: string): boolean {
  const fromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  return certificate.publicKey.export({ type: 'spki', format: 'der' }).equals(fromKey);
}
