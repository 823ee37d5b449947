import { createHash, randomBytes } from 'node:crypto';
import { ValidationError } from '../errors';

/** Nomad's `operator gossip keyring generate` makes 32 random bytes; serf accepts 16, 24 or 32. */
const GOSSIP_KEY_BYTES = 32;

/** Standard base64 of 16, 24 or 32 bytes, padded: what serf's keyring and the keyring API take. */
const GOSSIP_KEY = /^([A-Za-z0-9+/]{22}==|[A-Za-z0-9+/]{32}|[A-Za-z0-9+/]{43}=)$/;

export function generateGossipKey(): string {
  return randomBytes(GOSSIP_KEY_BYTES).toString('base64');
}

export function isGossipKey(value: string): boolean {
  return GOSSIP_KEY.test(value);
}

/**
 * What stands for a gossip key wherever one must be named (events, table items, logs, the CLI): the
 * first 16 hex digits of SHA-256 over the key's bytes, which a node computes with
 * `base64 -d | sha256sum | cut -c1-16`. A value that is not a gossip key is refused without being
 * echoed.
 */
export function gossipKeyFingerprint(key: string): string {
  if (!isGossipKey(key)) {
    throw new ValidationError('not a gossip key', ['key: must be standard base64 of 16, 24 or 32 bytes']);
  }
  return createHash('sha256').update(Buffer.from(key, 'base64')).digest('hex').slice(0, 16);
}
