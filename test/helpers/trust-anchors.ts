/**
 * `certificates` for the cluster configs of tests whose nodes never run the install script (the
 * in-process CA, the model, handlers, Vault tests): the field is required, and no node checks it.
 */
export const UNCHECKED_TRUST_ANCHORS = {
  trustedRootFingerprints: ['5d0b1f3c8e2a4b6d9f7e1c3a5b7d9f1e3c5a7b9d1f3e5c7a9b1d3f5e7c9a1b3d'],
};
