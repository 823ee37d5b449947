/**
 * A cluster's provisioned identity as the tests' configurations write it: one Auto Scaling group per
 * role, named after the cluster so several clusters never share one.
 */
export function testInventory(cluster: string, servers = 3) {
  return {
    servers: { autoScalingGroups: [`${cluster}-servers`] },
    clients: { autoScalingGroups: [`${cluster}-clients`] },
    serverSet: { count: servers },
  };
}
