import 'reflect-metadata';
import 'aws-sdk-client-mock-vitest/extend';
import { afterAll, expect } from 'vitest';
import { descendants } from './helpers/processes';

// Runs after each test file's own afterAll hooks: whatever the file started (node agents, serf, scripts
// on nodes) must be gone by then, or the suite fails and names it.
afterAll(async () => {
  for (let waited = 0; descendants().length > 0 && waited < 3_000; waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  expect(descendants().map((info) => `${info.pid} ${info.command}`)).toEqual([]);
});
