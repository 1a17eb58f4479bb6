import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: more parallel files only add contention to the timing-free but socket-heavy suites.
    maxWorkers: 2,
  },
})
