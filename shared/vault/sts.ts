/** The endpoint Vault's AWS auth method and the product's admin login use unless configured otherwise. */
export const GLOBAL_STS_ENDPOINT = 'https://sts.amazonaws.com';

/** Regional STS hosts of the aws and aws-us-gov partitions (FIPS too), and of aws-cn (.amazonaws.com.cn). */
const REGIONAL_STS_HOST = /^sts(?:-fips)?\.((?:[a-z]{2}|us-gov)-[a-z]+-\d)\.amazonaws\.com$/;
const CHINA_STS_HOST = /^sts\.(cn-[a-z]+-\d)\.amazonaws\.com\.cn$/;

/**
 * The region a request to this STS endpoint must be signed for, or undefined when it is not an STS
 * endpoint (https, host only). The global endpoint is us-east-1's; aws-cn and aws-us-gov have no
 * global endpoint, so their region always comes from the host.
 */
export function stsEndpointRegion(endpoint: string): string | undefined {
  if (!URL.canParse(endpoint)) return undefined;
  const url = new URL(endpoint);
  if (url.protocol !== 'https:' || url.port !== '' || url.pathname !== '/' || url.search !== '')
    return undefined;
  if (url.username !== '' || url.password !== '' || url.hash !== '') return undefined;
  if (url.hostname === 'sts.amazonaws.com') return 'us-east-1';
  return (REGIONAL_STS_HOST.exec(url.hostname) ?? CHINA_STS_HOST.exec(url.hostname))?.[1];
}
