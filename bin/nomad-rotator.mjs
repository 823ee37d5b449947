#!/usr/bin/env node
// Runs the TypeScript CLI through tsx, so `npx nomad-rotator` works from a checkout without a build step.
import { register } from 'tsx/esm/api';

register();
const { run } = await import('../cli/main.ts');
await run();
