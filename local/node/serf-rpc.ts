// A client for the serf agent's RPC protocol (msgpack over TCP: a handshake, then a request header and
// body, answered by a response header and body). The stand-in talks to its serf agent this way rather
// than through `serf keys -install=<key>`, so a gossip key never appears on a command line, and the
// answer carries what Nomad reports (NumNodes, per-node Messages) instead of the CLI's prose.
import { connect } from 'node:net';

export interface SerfAddress {
  host: string;
  port: number;
}

export interface SerfMember {
  Name: string;
  Addr: string;
  Port: number;
  Tags: Record<string, string>;
  Status: string;
  ProtocolMin: number;
  ProtocolMax: number;
  ProtocolCur: number;
  DelegateMin: number;
  DelegateMax: number;
  DelegateCur: number;
}

/** serf's KeyResponse; `error` is the agent's error text, e.g. "2/3 nodes reported success". */
export interface SerfKeyResponse {
  error: string;
  Messages: Record<string, string>;
  Keys: Record<string, number>;
  NumNodes: number;
  NumErr: number;
  NumResp: number;
}

export type KeyOperation = 'install-key' | 'use-key' | 'remove-key' | 'list-keys';

export async function serfMembers(address: SerfAddress, timeoutMs: number): Promise<SerfMember[]> {
  const { header, body } = await call(address, 'members', undefined, timeoutMs);
  if (header.Error) throw new Error(`serf: ${header.Error}`);
  const members = (body as { Members?: Record<string, unknown>[] | null }).Members ?? [];
  return members.map((member) => ({
    Name: String(member.Name),
    Addr: ipText(member.Addr),
    Port: Number(member.Port),
    Tags: (member.Tags as Record<string, string> | null) ?? {},
    Status: String(member.Status),
    ProtocolMin: Number(member.ProtocolMin),
    ProtocolMax: Number(member.ProtocolMax),
    ProtocolCur: Number(member.ProtocolCur),
    DelegateMin: Number(member.DelegateMin),
    DelegateMax: Number(member.DelegateMax),
    DelegateCur: Number(member.DelegateCur),
  }));
}

export async function serfKeys(
  address: SerfAddress,
  operation: KeyOperation,
  key: string | undefined,
  timeoutMs: number,
): Promise<SerfKeyResponse> {
  const { header, body } = await call(
    address,
    operation,
    operation === 'list-keys' ? undefined : { Key: key ?? '' },
    timeoutMs,
  );
  const response = body as Partial<Record<keyof SerfKeyResponse, unknown>>;
  return {
    error: header.Error,
    Messages: (response.Messages as Record<string, string> | null) ?? {},
    Keys: (response.Keys as Record<string, number> | null) ?? {},
    NumNodes: Number(response.NumNodes ?? 0),
    NumErr: Number(response.NumErr ?? 0),
    NumResp: Number(response.NumResp ?? 0),
  };
}

/** Resolves once the agent accepts a handshake: its RPC listener opens after memberlist is bound. */
export async function serfHandshake(address: SerfAddress, timeoutMs: number): Promise<void> {
  await call(address, undefined, undefined, timeoutMs);
}

interface ResponseHeader {
  Seq: number;
  Error: string;
}

function call(
  address: SerfAddress,
  command: string | undefined,
  body: Record<string, string> | undefined,
  timeoutMs: number,
): Promise<{ header: ResponseHeader; body: unknown }> {
  return new Promise((resolve, reject) => {
    const socket = connect(address.port, address.host);
    const values: unknown[] = [];
    let buffer = Buffer.alloc(0);
    const fail = (error: Error) => {
      socket.destroy();
      reject(error);
    };
    const finish = (header: ResponseHeader, answer: unknown) => {
      socket.end();
      resolve({ header, body: answer });
    };
    socket.setTimeout(timeoutMs, () =>
      fail(new Error(`serf agent at ${address.host}:${address.port} did not answer in ${timeoutMs} ms`)),
    );
    socket.on('error', fail);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (let decoded = tryDecode(buffer); decoded !== undefined; decoded = tryDecode(buffer)) {
        values.push(decoded.value);
        buffer = buffer.subarray(decoded.length);
        const [handshake, header, answer] = values as [ResponseHeader, ResponseHeader?, unknown?];
        if (handshake.Error) return fail(new Error(`serf: ${handshake.Error}`));
        if (command === undefined) return finish(handshake, {});
        // Key commands always send a body; members sends none when its header carries an error.
        if (header !== undefined && command === 'members' && header.Error) return finish(header, {});
        if (header !== undefined && values.length === 3) return finish(header, answer ?? {});
      }
    });
    socket.on('connect', () => {
      const frames = [encode({ Command: 'handshake', Seq: 0 }), encode({ Version: 1 })];
      if (command !== undefined) frames.push(encode({ Command: command, Seq: 1 }));
      if (body !== undefined) frames.push(encode(body));
      socket.write(Buffer.concat(frames));
    });
  });
}

/** Go encodes a net.IP as 4 or 16 raw bytes; Nomad's JSON shows it as text. */
function ipText(value: unknown): string {
  if (!Buffer.isBuffer(value)) return String(value);
  const v4 = value.length === 16 && value.subarray(0, 12).equals(V4_IN_V6) ? value.subarray(12) : value;
  if (v4.length === 4) return [...v4].join('.');
  return (value.toString('hex').match(/.{4}/g) ?? []).join(':');
}

const V4_IN_V6 = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/**
 * Just the msgpack the requests need: flat maps of strings and small unsigned integers. Strings longer
 * than fixstr use raw16 (0xda), which the old msgpack spec serf's codec follows and the new spec read
 * the same way.
 */
function encode(map: Record<string, string | number>): Buffer {
  const entries = Object.entries(map);
  return Buffer.concat([
    Buffer.from([0x80 | entries.length]),
    ...entries.flatMap(([key, item]) => [encodeString(key), encodeScalar(item)]),
  ]);
}

function encodeScalar(value: string | number): Buffer {
  if (typeof value === 'string') return encodeString(value);
  if (!Number.isInteger(value) || value < 0 || value > 0x7f) throw new Error('only fixint numbers are sent');
  return Buffer.from([value]);
}

function encodeString(value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length < 32) return Buffer.concat([Buffer.from([0xa0 | bytes.length]), bytes]);
  if (bytes.length > 0xffff) throw new Error('string too long for a serf request');
  const head = Buffer.alloc(3);
  head[0] = 0xda;
  head.writeUInt16BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

class Incomplete extends Error {}

function tryDecode(buffer: Buffer): { value: unknown; length: number } | undefined {
  try {
    const reader = new Reader(buffer);
    const value = reader.value();
    return { value, length: reader.offset };
  } catch (error) {
    if (error instanceof Incomplete) return undefined;
    throw error;
  }
}

class Reader {
  offset = 0;

  constructor(private readonly buffer: Buffer) {}

  value(): unknown {
    const byte = this.#take(1)[0]!;
    if (byte < 0x80) return byte;
    if (byte >= 0xe0) return byte - 0x100;
    if (byte >= 0xa0 && byte < 0xc0) return this.#take(byte & 0x1f).toString('utf8');
    if (byte >= 0x90 && byte < 0xa0) return this.#array(byte & 0x0f);
    if (byte >= 0x80 && byte < 0x90) return this.#map(byte & 0x0f);
    switch (byte) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return Buffer.from(this.#take(this.#uint(1)));
      case 0xc5:
        return Buffer.from(this.#take(this.#uint(2)));
      case 0xc6:
        return Buffer.from(this.#take(this.#uint(4)));
      case 0xca:
        return this.#take(4).readFloatBE(0);
      case 0xcb:
        return this.#take(8).readDoubleBE(0);
      case 0xcc:
        return this.#uint(1);
      case 0xcd:
        return this.#uint(2);
      case 0xce:
        return this.#uint(4);
      case 0xcf:
        return Number(this.#take(8).readBigUInt64BE(0));
      case 0xd0:
        return this.#take(1).readInt8(0);
      case 0xd1:
        return this.#take(2).readInt16BE(0);
      case 0xd2:
        return this.#take(4).readInt32BE(0);
      case 0xd3:
        return Number(this.#take(8).readBigInt64BE(0));
      case 0xd9:
        return this.#take(this.#uint(1)).toString('utf8');
      case 0xda:
        return this.#take(this.#uint(2)).toString('utf8');
      case 0xdb:
        return this.#take(this.#uint(4)).toString('utf8');
      case 0xdc:
        return this.#array(this.#uint(2));
      case 0xdd:
        return this.#array(this.#uint(4));
      case 0xde:
        return this.#map(this.#uint(2));
      case 0xdf:
        return this.#map(this.#uint(4));
      default:
        throw new Error(`unsupported msgpack type 0x${byte.toString(16)}`);
    }
  }

  #array(length: number): unknown[] {
    return Array.from({ length }, () => this.value());
  }

  #map(length: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let index = 0; index < length; index += 1) {
      const key = this.value();
      out[Buffer.isBuffer(key) ? key.toString('utf8') : String(key)] = this.value();
    }
    return out;
  }

  #uint(bytes: 1 | 2 | 4): number {
    return this.#take(bytes).readUIntBE(0, bytes);
  }

  #take(length: number): Buffer {
    if (this.offset + length > this.buffer.length) throw new Incomplete();
    const slice = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return slice;
  }
}
