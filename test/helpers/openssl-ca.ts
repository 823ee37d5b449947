import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const openssl = (args: string[], cwd: string) => promisify(execFile)('openssl', args, { cwd });

/** A root + intermediate made with real openssl, signing leaves the way Vault's sign endpoint does. */
export async function opensslCa() {
  const dir = await mkdtemp(join(tmpdir(), 'ca-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'root.key',
      '-out',
      'root.pem',
      '-days',
      '30',
      '-subj',
      '/CN=test-root',
      '-addext',
      'basicConstraints=critical,CA:true',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  await openssl(
    ['req', '-new', ...ec, '-keyout', 'int.key', '-out', 'int.csr', '-subj', '/CN=test-intermediate'],
    dir,
  );
  await writeFile(
    join(dir, 'int.ext'),
    'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n',
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      'int.csr',
      '-CA',
      'root.pem',
      '-CAkey',
      'root.key',
      '-set_serial',
      '0x01',
      '-out',
      'int.pem',
      '-days',
      '20',
      '-extfile',
      'int.ext',
    ],
    dir,
  );
  const [root, intermediate] = await Promise.all([
    readFile(join(dir, 'root.pem'), 'utf8'),
    readFile(join(dir, 'int.pem'), 'utf8'),
  ]);

  /**
   * Sign a CSR (base64 of its DER, as prepare prints it) with the given SANs and usages; returns the
   * leaf PEM and its serial.
   */
  const sign = async (csrDerBase64: string, san: string, usages: string) => {
    const id = randomBytes(6).toString('hex');
    await writeFile(join(dir, `${id}.csr`), Buffer.from(csrDerBase64, 'base64'));
    await writeFile(
      join(dir, `${id}.ext`),
      `subjectAltName=${san}\nextendedKeyUsage=${usages}\nbasicConstraints=CA:false\nkeyUsage=digitalSignature,keyEncipherment\n`,
    );
    // A first byte of 1..0x7f: DER keeps the serial exactly as written (no leading 0x00 dropped, no
    // sign byte added), so it reads back as the same 32 hex digits from any certificate parser.
    const serialBytes = randomBytes(16);
    serialBytes[0] = serialBytes[0]! & 0x7f || 0x01;
    const serial = serialBytes.toString('hex');
    await openssl(
      [
        'x509',
        '-req',
        '-inform',
        'DER',
        '-in',
        `${id}.csr`,
        '-CA',
        'int.pem',
        '-CAkey',
        'int.key',
        '-set_serial',
        `0x${serial}`,
        '-out',
        `${id}.pem`,
        '-days',
        '1',
        '-extfile',
        `${id}.ext`,
      ],
      dir,
    );
    return { pem: await readFile(join(dir, `${id}.pem`), 'utf8'), serial };
  };
  /** Remove the CA's working directory (its private keys included). */
  const dispose = () => rm(dir, { recursive: true, force: true });
  return { root, intermediate, bundle: `${intermediate}${root}`, sign, dispose };
}
