import { describe, expect, test } from "vitest";
import { api, internal } from "../convex/_generated/api";
import { identityFor, setup } from "./support/setup";

/**
 * The calls the original spec shows the front end and operators making, with exactly the
 * spec's arguments: they must keep working as written.
 */
describe("the spec's own calls", () => {
  test("getOrCreateUser, getJob, getCredits, listUserJobs, listPlans, getPlan, updateUserPlan", async () => {
    const t = await setup();
    // npx convex run users:getOrCreateUser --arg '{"clerkId": "user_123", "email": "test@example.com"}'
    const as = t.withIdentity(identityFor("user_123"));
    const user = await as.mutation(api.users.getOrCreateUser, {
      clerkId: "user_123",
      email: "test@example.com",
    });
    expect(user).toMatchObject({ clerkId: "user_123", plan: "starter", credits: 80 });
    const userId = user._id;

    // createJob(userId, prompt, imageUrl?, durationSec, seed?)
    const jobId = await as.mutation(api.jobs.createJob, {
      userId,
      prompt: "a red fox in the snow",
      durationSec: 10,
      seed: 42,
    });

    // useQuery(api.jobs.getJob, { jobId })
    expect(await as.query(api.jobs.getJob, { jobId })).toMatchObject({
      _id: jobId,
      status: "queued",
      creditsUsed: 10,
    });
    // useQuery(api.credits.getCredits, { userId })
    expect(await as.query(api.credits.getCredits, { userId })).toMatchObject({
      credits: 70,
      plan: { name: "starter", monthlyCredits: 80 },
    });
    // useQuery(api.jobs.listUserJobs, { userId }) and listUserJobs(userId, limit?)
    const listed = await as.query(api.jobs.listUserJobs, { userId });
    expect(listed).toMatchObject({ isDone: true, page: [{ _id: jobId }] });
    expect((await as.query(api.jobs.listUserJobs, { userId, limit: 1 })).page).toHaveLength(1);

    // listPlans(), getPlan(name)
    expect((await t.query(api.plans.listPlans, {})).map((p) => p.name)).toEqual([
      "starter",
      "creator",
      "studio",
    ]);
    expect(await t.query(api.plans.getPlan, { name: "studio" })).toMatchObject({
      monthlyCredits: 500,
    });
    // updateUserPlan(userId, planName): operators, through npx convex run.
    expect(
      await t.mutation(internal.users.updateUserPlan, { userId, planName: "creator" }),
    ).toEqual({ changed: true, plan: "creator" });
  });
});
