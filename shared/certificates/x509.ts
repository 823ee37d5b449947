// @peculiar/x509 needs reflect-metadata loaded first and a WebCrypto provider; every user imports
// x509 from here so that setup happens exactly once.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[1]);

export { x509 };
