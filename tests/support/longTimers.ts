/**
 * Node fires a `setTimeout` whose delay exceeds 2^31 − 1 ms (24.8 days) after 1 ms, with a
 * TimeoutOverflowWarning. convex-test schedules every scheduled function with a real
 * `setTimeout`, so under real timers a lot expiry or renewal due in a month would run within the
 * test, or after it, against a deployment whose environment was already restored. This setup file
 * (vitest.config.ts `setupFiles`) caps such delays at the maximum instead, unref'd: the function
 * stays pending for the rest of the run, as it would on a deployment. Fake timers
 * (`vi.useFakeTimers`) replace `setTimeout` while active and handle long delays themselves.
 */
const MAX_DELAY_MS = 2 ** 31 - 1;
const realSetTimeout = globalThis.setTimeout;

globalThis.setTimeout = Object.assign(
  (handler: (...args: unknown[]) => void, delay?: number, ...args: unknown[]) => {
    if (delay === undefined || delay <= MAX_DELAY_MS) {
      return realSetTimeout(handler, delay, ...args);
    }
    const timer = realSetTimeout(handler, MAX_DELAY_MS, ...args);
    (timer as { unref?: () => void }).unref?.();
    return timer;
  },
  realSetTimeout,
) as typeof setTimeout;
