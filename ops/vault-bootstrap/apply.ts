import type { ClusterConfig } from '../../shared/config';
import { formatDuration } from '../../shared/duration';
import { ValidationError } from '../../shared/errors';
import { parseOrThrow } from '../../shared/validation';
import type { VaultClient } from '../../shared/vault/client';
import { isVaultAnswer, type VaultBadRequestError, VaultNotFoundError } from '../../shared/vault/errors';
import { stsEndpointRegion } from '../../shared/vault/sts';
import { tokenRoleName } from '../../shared/vault-token/tokens';
import {
  adminPolicyHcl,
  type BootstrapAction,
  type BootstrapItem,
  type BootstrapReport,
  type BootstrapSpec,
  bootstrapSpecSchema,
  clusterDisagreements,
  keyBitsOf,
  type PkiRole,
  pkiRoles,
  tlsPolicyHcl,
  tokenRoleFields,
} from './spec';

/**
 * Set Vault up for nomad-rotator, idempotently: every item is read first and only written when it is
 * missing or differs from what the spec wants. A dry run reads everything and writes nothing.
 */
export async function bootstrapVault(
  vault: VaultClient,
  token: string,
  input: unknown,
  options: {
    dryRun?: boolean;
    /** The clusters this Vault serves: the spec is checked against them before anything is read or written. */
    clusters?: readonly ClusterConfig[];
  } = {},
): Promise<BootstrapReport> {
  const spec = parseOrThrow(bootstrapSpecSchema, input, 'vault-bootstrap spec');
  const disagreements = clusterDisagreements(spec, options.clusters ?? []);
  if (disagreements.length > 0) {
    throw new ValidationError(
      'vault-bootstrap refused, nothing was written: the roles it would create refuse what these clusters request',
      disagreements,
    );
  }
  const urlBase = (spec.pkiUrlBase ?? vault.address).replace(/\/+$/, '');
  return new VaultBootstrap(
    vault,
    token,
    spec,
    options.dryRun ?? false,
    urlBase,
    options.clusters ?? [],
  ).run();
}

type Fields = Record<string, unknown>;

class VaultBootstrap {
  readonly #items: BootstrapItem[] = [];
  #legacyRolePresent = false;

  constructor(
    private readonly vault: VaultClient,
    private readonly token: string,
    private readonly spec: BootstrapSpec,
    private readonly dryRun: boolean,
    /** Base of the AIA and CRL URLs, without a trailing slash. */
    private readonly urlBase: string,
    /** Each gets its token role; the admin policy mints through those roles only. */
    private readonly clusters: readonly ClusterConfig[],
  ) {}

  async run(): Promise<BootstrapReport> {
    const { spec } = this;
    await this.#refuseWhatVaultWouldRefuse();
    if (!spec.externalRoot) await this.#mount(spec.rootMount, spec.rootMaxTtl);
    await this.#mount(spec.intermediateMount, spec.intermediateMaxTtl);
    await this.#rootCa();
    await this.#intermediateCa();
    await this.#aiaUrls();
    await this.#autoTidy();
    for (const role of pkiRoles(spec, this.clusters)) await this.#pkiRole(role);
    this.#legacyAgentRole();
    await this.#policy(spec.tokenPolicy, tlsPolicyHcl(spec));
    await this.#policy(spec.adminPolicy, adminPolicyHcl(spec, this.clusters));
    await this.#tokenRoles();
    await this.#awsAuth();
    await this.#awsClientConfig();
    await this.#awsAdminRole();
    return { dryRun: this.dryRun, items: this.#items };
  }

  /** Reads only: a change Vault refuses half-way through a run is refused here, before any write. */
  async #refuseWhatVaultWouldRefuse(): Promise<void> {
    const { spec } = this;
    await this.#refuseForeignRoles();
    const role = await this.#readData(`auth/${spec.awsAuthMount}/role/${spec.adminRole}`);
    if (role?.resolve_aws_unique_ids === true && !spec.resolveAwsUniqueIds) {
      throw new ValidationError(
        `resolveAwsUniqueIds: false is refused, nothing was written: aws role ${spec.adminRole} resolves IAM unique ids and Vault does not allow turning that off; keep true, or delete auth/${spec.awsAuthMount}/role/${spec.adminRole} first`,
      );
    }
  }

  /**
   * Vault's revoke endpoint takes any serial of the mount from any token with update on it, whatever
   * role signed it, so no policy can keep the issuing functions' revocations to Nomad's certificates.
   * The intermediate mount must therefore issue for Nomad alone: a role of anyone else is refused.
   * The legacy agent role is tolerated so clusters can move off it, and reported as to delete.
   */
  async #refuseForeignRoles(): Promise<void> {
    const { spec } = this;
    const mounts = await this.#readData('sys/mounts');
    const mount = mounts?.[`${spec.intermediateMount}/`] as { type?: string } | undefined;
    // A mount that is not pki is refused by #mount, with its own message.
    if (mount?.type !== 'pki') return;
    const ours = new Set([spec.serverRole, spec.clientRole, spec.cliRole, spec.legacyAgentRole]);
    const names = await this.#roleNames();
    this.#legacyRolePresent = names.includes(spec.legacyAgentRole);
    const foreign = names.filter((name) => !ours.has(name));
    if (foreign.length > 0) {
      throw new ValidationError(
        `${spec.intermediateMount} holds roles that are not nomad-rotator's, nothing was written: ${foreign.join(', ')}. Any token that may revoke on this mount can revoke their certificates too, so the mount must issue for Nomad alone; move them to another mount and delete them (vault delete ${spec.intermediateMount}/roles/<name>), or give nomad-rotator its own intermediateMount`,
      );
    }
  }

  /** LIST <intermediateMount>/roles; Vault answers 404 when there is none. */
  async #roleNames(): Promise<string[]> {
    try {
      const listed = await this.vault.list<{ data?: { keys?: unknown } }>(
        `${this.spec.intermediateMount}/roles`,
        this.token,
      );
      const keys = listed.data?.keys;
      return Array.isArray(keys) ? keys.map(String) : [];
    } catch (error) {
      if (error instanceof VaultNotFoundError) return [];
      throw error;
    }
  }

  /** Reported, never deleted here: clusters still configured with it sign through it until redeployed. */
  #legacyAgentRole(): void {
    const { spec } = this;
    const name = spec.legacyAgentRole;
    if (!this.#legacyRolePresent || [spec.serverRole, spec.clientRole, spec.cliRole].includes(name)) return;
    this.#record({
      item: `role ${spec.intermediateMount}/${name}`,
      action: 'to-delete',
      detail: `the legacy agent role; ${spec.tokenPolicy} no longer grants its sign path. Once every cluster is deployed with vault.serverRole and vault.clientRole, delete it: vault delete ${spec.intermediateMount}/roles/${name}`,
    });
  }

  /** config/urls: without them leaves carry no CA issuer (AIA) or CRL distribution point. */
  async #aiaUrls(): Promise<void> {
    const mount = this.spec.intermediateMount;
    const path = `${mount}/config/urls`;
    // The DER forms, which Vault serves without a token and TLS clients expect behind these URLs.
    const caUrl = `${this.urlBase}/v1/${mount}/ca`;
    const crlUrl = `${this.urlBase}/v1/${mount}/crl`;
    const wanted: Fields = { issuing_certificates: [caUrl], crl_distribution_points: [crlUrl] };
    const current = await this.#readData(path);
    // A mount never configured reads back with empty lists: that is "missing", not a drift.
    const configured = Object.keys(wanted).some(
      (field) => Array.isArray(current?.[field]) && (current[field] as unknown[]).length > 0,
    );
    await this.#reconcile({
      item: `urls ${mount}`,
      detail: `CA ${caUrl}, CRL ${crlUrl}`,
      current: configured ? current : undefined,
      wanted,
      write: () => this.#write(path, wanted),
    });
  }

  /** config/auto-tidy: without it every issued certificate stays in Vault's storage forever. */
  async #autoTidy(): Promise<void> {
    const { spec } = this;
    const path = `${spec.intermediateMount}/config/auto-tidy`;
    const wanted: Fields = {
      enabled: true,
      tidy_cert_store: true,
      tidy_revoked_certs: true,
      interval_duration: spec.autoTidyInterval,
      safety_buffer: spec.tidySafetyBuffer,
    };
    const current = await this.#readData(path);
    await this.#reconcile({
      item: `auto-tidy ${spec.intermediateMount}`,
      detail: `every ${formatDuration(spec.autoTidyInterval)}, expired and revoked certificates removed after ${formatDuration(spec.tidySafetyBuffer)}`,
      // Vault reports its defaults (disabled) for a mount never configured: that is "missing", not a drift.
      current: current?.enabled === true ? current : undefined,
      wanted,
      write: () => this.#write(path, wanted),
    });
  }

  async #mount(mount: string, maxTtl: number): Promise<void> {
    const mounts = await this.#readData('sys/mounts');
    const current = mounts?.[`${mount}/`] as
      | { type?: string; config?: { max_lease_ttl?: number } }
      | undefined;
    if (current !== undefined && current.type !== 'pki') {
      throw new ValidationError(
        `${mount}/ is mounted as ${current.type ?? 'unknown'}, not pki; refusing to touch it`,
      );
    }
    const detail = `pki, max_lease_ttl ${formatDuration(maxTtl)}`;
    await this.#reconcile({
      item: `mount ${mount}`,
      detail,
      current:
        current === undefined ? undefined : definedFields({ max_lease_ttl: current.config?.max_lease_ttl }),
      wanted: { max_lease_ttl: maxTtl },
      write: (exists) =>
        exists
          ? this.#write(`sys/mounts/${mount}/tune`, { max_lease_ttl: `${maxTtl}s` })
          : this.#write(`sys/mounts/${mount}`, { type: 'pki', config: { max_lease_ttl: `${maxTtl}s` } }),
    });
  }

  async #rootCa(): Promise<void> {
    const { spec } = this;
    const item = `root CA in ${spec.rootMount}`;
    if (spec.externalRoot) {
      this.#record({ item: 'root CA', action: 'skipped', detail: 'external root configured' });
      return;
    }
    if ((await this.#caPem(spec.rootMount)) !== undefined) {
      this.#record({ item, action: 'unchanged', detail: 'a root CA exists; never regenerated' });
      return;
    }
    if (!this.dryRun) {
      await this.#write(`${spec.rootMount}/root/generate/internal`, {
        common_name: `${spec.region}.nomad root CA`,
        ttl: `${spec.rootMaxTtl}s`,
        ...this.#keyParameters(),
      });
    }
    this.#record({
      item,
      action: 'created',
      detail: `${spec.region}.nomad root CA, ${formatDuration(spec.rootMaxTtl)}`,
    });
  }

  async #intermediateCa(): Promise<void> {
    const { spec } = this;
    const item = `intermediate CA in ${spec.intermediateMount}`;
    if ((await this.#caPem(spec.intermediateMount)) !== undefined) {
      this.#record({ item, action: 'unchanged', detail: 'an intermediate CA is set; never regenerated' });
      return;
    }
    const detail = `${spec.region}.nomad intermediate CA, ${formatDuration(spec.intermediateMaxTtl)}`;
    if (this.dryRun) {
      this.#record({ item, action: 'created', detail });
      return;
    }
    if (spec.externalRoot && spec.intermediateCertificatePem !== undefined) {
      // The key was generated in the mount with the CSR of an earlier run; Vault pairs it with the certificate.
      await this.#write(`${spec.intermediateMount}/intermediate/set-signed`, {
        certificate: spec.intermediateCertificatePem,
      });
      this.#record({ item, action: 'created', detail: 'imported the externally signed intermediate' });
      return;
    }
    const csrPem = await this.#intermediateCsr();
    if (spec.externalRoot) {
      this.#record({
        item,
        action: 'pending',
        detail: 'sign the CSR with the external root, then re-run with intermediateCertificatePem',
        csrPem,
      });
      return;
    }
    const signed = await this.#write<{ data: { certificate: string; issuing_ca: string } }>(
      `${spec.rootMount}/root/sign-intermediate`,
      {
        csr: csrPem,
        common_name: `${spec.region}.nomad intermediate CA`,
        ttl: `${spec.intermediateMaxTtl}s`,
        format: 'pem',
      },
    );
    await this.#write(`${spec.intermediateMount}/intermediate/set-signed`, {
      certificate: `${signed.data.certificate.trim()}\n${signed.data.issuing_ca.trim()}`,
    });
    this.#record({ item, action: 'created', detail });
  }

  async #intermediateCsr(): Promise<string> {
    const { spec } = this;
    const generated = await this.#write<{ data: { csr: string } }>(
      `${spec.intermediateMount}/intermediate/generate/internal`,
      { common_name: `${spec.region}.nomad intermediate CA`, ...this.#keyParameters() },
    );
    return generated.data.csr;
  }

  async #pkiRole(role: PkiRole): Promise<void> {
    const { spec } = this;
    const path = `${spec.intermediateMount}/roles/${role.name}`;
    const { fields } = role;
    const usage = fields.server_flag ? 'server+client' : 'client';
    const extras = [
      ...(fields.allow_localhost ? ['localhost'] : []),
      ...(fields.allow_ip_sans ? ['IP SANs'] : []),
    ];
    await this.#reconcile({
      item: `role ${spec.intermediateMount}/${role.name}`,
      detail: `${role.kind} certificates (${usage} auth) for ${fields.allowed_domains.join(', ')} only${extras.length > 0 ? ` and ${extras.join(', ')}` : ''}, ${spec.keyType} ${this.#keyBits()}, max_ttl ${formatDuration(fields.max_ttl)}`,
      current: await this.#readData(path),
      wanted: fields,
      // POST replaces the whole role, so a partial drift is corrected by writing everything we want.
      write: () => this.#write(path, fields),
    });
  }

  async #policy(name: string, hcl: string): Promise<void> {
    const current = await this.#readData(`sys/policies/acl/${name}`);
    await this.#reconcile({
      item: `policy ${name}`,
      hcl,
      current: current === undefined ? undefined : { policy: String(current.policy ?? '').trim() },
      wanted: { policy: hcl },
      write: () => this.#write(`sys/policies/acl/${name}`, { policy: hcl }),
    });
  }

  /**
   * One token role per cluster. Without clusters there is none, and the admin can mint nothing:
   * the report says so rather than leave an admin policy that looks complete.
   */
  async #tokenRoles(): Promise<void> {
    if (this.clusters.length === 0) {
      this.#record({
        item: 'token roles',
        action: 'skipped',
        detail: 'no clusters given (--clusters): the admin can mint no token until they are',
      });
      return;
    }
    for (const cluster of this.clusters) {
      const name = tokenRoleName(cluster);
      const path = `auth/token/roles/${name}`;
      const wanted = tokenRoleFields(this.spec, cluster);
      const { tokenRotation } = cluster.vault;
      const cidrs = tokenRotation.tokenBoundCidrs;
      await this.#reconcile({
        item: `token role ${name}`,
        detail: `cluster ${cluster.name}: ${this.spec.tokenPolicy} only, orphan, period ${formatDuration(tokenRotation.tokenPeriod)}, explicit max ttl ${formatDuration(tokenRotation.tokenExplicitMaxTtl)}, no default policy, ${cidrs && cidrs.length > 0 ? `bound to ${cidrs.join(', ')}` : 'no bound CIDRs'}`,
        current: await this.#readData(path),
        wanted,
        write: () => this.#write(path, wanted),
      });
    }
  }

  async #awsAuth(): Promise<void> {
    const { awsAuthMount } = this.spec;
    const methods = await this.#readData('sys/auth');
    const current = methods?.[`${awsAuthMount}/`] as { type?: string } | undefined;
    if (current !== undefined && current.type !== 'aws') {
      throw new ValidationError(
        `auth/${awsAuthMount} is a ${current.type ?? 'unknown'} auth method, not aws`,
      );
    }
    await this.#reconcile({
      item: `auth method ${awsAuthMount}`,
      detail: 'aws',
      current: current === undefined ? undefined : {},
      wanted: {},
      write: () => this.#write(`sys/auth/${awsAuthMount}`, { type: 'aws' }),
    });
  }

  async #awsClientConfig(): Promise<void> {
    const { awsAuthMount, iamServerIdHeader, stsEndpoint } = this.spec;
    const path = `auth/${awsAuthMount}/config/client`;
    const current = await this.#readData(path);
    // Vault reports "" for what was never set, and then uses the global endpoint.
    const wanted = {
      iam_server_id_header_value: iamServerIdHeader,
      sts_endpoint: stsEndpoint ?? '',
      sts_region: stsEndpoint === undefined ? '' : (stsEndpointRegion(stsEndpoint) ?? ''),
    };
    const notes = [
      `X-Vault-AWS-IAM-Server-ID required: ${iamServerIdHeader}`,
      ...(stsEndpoint ? [`STS ${stsEndpoint} (${wanted.sts_region})`] : []),
    ];
    await this.#reconcile({
      item: `${path}`,
      detail: notes.join(', '),
      current,
      wanted,
      write: () => this.#write(path, wanted),
    });
  }

  async #awsAdminRole(): Promise<void> {
    const { spec } = this;
    const path = `auth/${spec.awsAuthMount}/role/${spec.adminRole}`;
    const wanted: Fields = {
      auth_type: 'iam',
      bound_iam_principal_arn: spec.adminRoleArns,
      token_policies: [spec.adminPolicy],
      token_ttl: spec.adminTokenTtl,
      token_max_ttl: spec.adminTokenTtl,
      // The admin policy names everything the login needs; the default policy would add cubbyhole and more.
      token_no_default_policy: true,
      resolve_aws_unique_ids: spec.resolveAwsUniqueIds,
    };
    await this.#reconcile({
      item: `aws role ${spec.adminRole}`,
      detail: `iam login for ${spec.adminRoleArns.join(', ')}${spec.resolveAwsUniqueIds ? ' (bound to their IAM unique ids)' : ''} → policy ${spec.adminPolicy}, ttl ${formatDuration(spec.adminTokenTtl)}`,
      current: await this.#readData(path),
      wanted,
      write: async () => {
        try {
          await this.#write(path, wanted);
        } catch (error) {
          if (!isVaultAnswer(error, 400, /^unable to resolve ARN /)) throw error;
          throw new ValidationError(
            `aws role ${spec.adminRole}: Vault could not resolve ${spec.adminRoleArns.join(', ')} to IAM unique ids (resolveAwsUniqueIds): Vault's own AWS credentials need iam:GetRole on these roles (${String((error as VaultBadRequestError).context.vaultError)})`,
          );
        }
      },
    });
  }

  /** Compare what Vault reports with what we want; write only when missing or different. */
  async #reconcile(options: {
    item: string;
    detail?: string;
    hcl?: string;
    current: Fields | undefined;
    wanted: Fields;
    write: (exists: boolean) => Promise<unknown>;
  }): Promise<void> {
    const { item, detail, hcl, current, wanted } = options;
    const differing = current === undefined ? [] : differingFields(current, wanted);
    const action: BootstrapAction =
      current === undefined ? 'created' : differing.length > 0 ? 'updated' : 'unchanged';
    if (action !== 'unchanged' && !this.dryRun) await options.write(current !== undefined);
    const notes = [detail, differing.length > 0 ? `differs in ${differing.join(', ')}` : undefined].filter(
      (note) => note !== undefined,
    );
    this.#record({
      item,
      action,
      ...(notes.length > 0 ? { detail: notes.join('; ') } : {}),
      ...(hcl !== undefined ? { hcl } : {}),
    });
  }

  #record(item: BootstrapItem): void {
    this.#items.push(item);
  }

  #keyBits(): number {
    return keyBitsOf(this.spec);
  }

  #keyParameters(): Fields {
    return { key_type: this.spec.keyType, key_bits: this.#keyBits() };
  }

  /** The mount's CA certificate, or undefined when it has none (204 empty, or no such mount yet). */
  async #caPem(mount: string): Promise<string | undefined> {
    try {
      const pem: unknown = await this.vault.read(`${mount}/ca/pem`, this.token);
      return typeof pem === 'string' && pem.includes('BEGIN CERTIFICATE') ? pem : undefined;
    } catch (error) {
      if (error instanceof VaultNotFoundError) return undefined;
      throw error;
    }
  }

  /** `data` of a read (top-level fields for the sys/ routes Vault injects), or undefined on 404. */
  async #readData(path: string): Promise<Fields | undefined> {
    try {
      const response = await this.vault.read<{ data?: Fields | null } & Fields>(path, this.token);
      return response.data ?? response;
    } catch (error) {
      if (error instanceof VaultNotFoundError) return undefined;
      throw error;
    }
  }

  #write<T = unknown>(path: string, body: Fields): Promise<T> {
    return this.vault.write<T>(path, body, this.token);
  }
}

function definedFields(fields: Fields): Fields {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** Names of wanted fields Vault reports differently; a field Vault does not report cannot be compared. */
function differingFields(current: Fields, wanted: Fields): string[] {
  return Object.entries(wanted)
    .filter(([name, value]) => current[name] !== undefined && normalized(current[name]) !== normalized(value))
    .map(([name]) => name);
}

function normalized(value: unknown): string {
  if (Array.isArray(value)) return JSON.stringify(value.map(String).sort());
  if (typeof value === 'string') {
    // Vault echoes a single-element list field as a comma string in some versions.
    return value.includes('\n') ? value.trim() : JSON.stringify(value === '' ? [] : value.split(',').sort());
  }
  return JSON.stringify(value ?? null);
}
