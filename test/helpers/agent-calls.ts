import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import type { PeerCertificate } from 'node:tls';
import type { NodeSandbox } from '../../local/node/sandbox';

// Calls to a node's Nomad agent as an operator on the node makes them: over the HTTP API with the
// node's own CA and CLI certificate, or through the `nomad` CLI in the node's shell.

/**
 * The agent serves HTTPS on 127.0.0.1:4646 as a node's scripts see it; the CLI's default is http://,
 * and the SSM agent sets no NOMAD_* variables, so a script sets them itself.
 */
export const NOMAD_CLI_ENVIRONMENT = [
  'test -n "$NOMAD_ADDR" || export NOMAD_ADDR=https://127.0.0.1:4646',
  'export NOMAD_CACERT=/opt/nomad/agent-certs/ca.crt',
  'export NOMAD_CLIENT_CERT=/opt/nomad/cli-certs/cli.crt',
  'export NOMAD_CLIENT_KEY=/opt/nomad/cli-certs/cli.key',
].join('\n');

export interface AgentAnswer {
  status: number;
  text: string;
}

export interface ServedAgentAnswer extends AgentAnswer {
  /** The serial of the certificate the agent served, lower-case hex. */
  servedSerial: string;
}

export interface AgentCallOptions {
  body?: unknown;
  headers?: Record<string, string>;
  /** Present the node's CLI certificate (the default), or no client certificate at all. */
  clientCertificate?: boolean;
  /** Verify the agent with this CA instead of the node's ca.crt. */
  ca?: string;
}

/** An mTLS call to a node's agent with the node's own CLI certificate, as an operator on the node makes it. */
export async function callAgent(
  node: NodeSandbox,
  method: string,
  path: string,
  options: AgentCallOptions = {},
): Promise<AgentAnswer> {
  const { status, text } = await callAgentServed(node, method, path, options);
  return { status, text };
}

/** The same call, also telling which certificate the agent served for it. */
export async function callAgentServed(
  node: NodeSandbox,
  method: string,
  path: string,
  options: AgentCallOptions = {},
): Promise<ServedAgentAnswer> {
  const read = (file: string) => readFile(join(node.root, file), 'utf8');
  const ca = options.ca ?? (await read('opt/nomad/agent-certs/ca.crt'));
  const identity =
    options.clientCertificate === false
      ? {}
      : { cert: await read('opt/nomad/cli-certs/cli.crt'), key: await read('opt/nomad/cli-certs/cli.key') };
  return new Promise((resolve, reject) => {
    const call = request(
      {
        host: '127.0.0.1',
        port: node.httpsPort,
        method,
        path,
        headers: options.headers ?? {},
        ca,
        ...identity,
        agent: false,
        servername: 'localhost',
      },
      (response) => {
        const peer = (
          response.socket as unknown as { getPeerCertificate(): PeerCertificate }
        ).getPeerCertificate();
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            servedSerial: peer.serialNumber.toLowerCase(),
          }),
        );
      },
    );
    call.on('error', reject);
    call.end(options.body === undefined ? undefined : JSON.stringify(options.body));
  });
}

export const answerJson = (answer: AgentAnswer) => JSON.parse(answer.text) as Record<string, unknown>;

let shellRuns = 0;

/** A script in the node's shell, as the SSM agent runs it, with the `nomad` CLI pointed at the agent. */
export function nomadShell(node: NodeSandbox, script: string, timeoutSeconds = 60) {
  shellRuns += 1;
  return node.runScript({
    script: `${NOMAD_CLI_ENVIRONMENT}\n${script}`,
    commandId: `nomad-cli-${process.pid}-${shellRuns}`,
    timeoutSeconds,
  });
}
