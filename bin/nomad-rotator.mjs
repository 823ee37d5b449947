#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx nomad-rotator` works from a checkout without a build step.
import { register } from 'tsx/esm/api';

// The SDK warns on Node 20 that releases from 2027 need Node 22; an operator's terminal is not the
// place for it (the functions run on Lambda's Node 22/24). Set to anything else to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
register();
const { run } = await import('../cli/main.ts');
await run();
