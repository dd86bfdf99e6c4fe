"use client";
import { SignInButton, useUser } from "@clerk/react";
import { Authenticated, AuthLoading, Unauthenticated, useConvexAuth } from "convex/react";
import { useMutation, useQuery } from "convex/react";
import type { FunctionReturnType } from "convex/server";
import { useEffect, type ReactNode } from "react";
import { api } from "../convex/_generated/api";

export type CurrentUser = NonNullable<FunctionReturnType<typeof api.users.me>>;

/**
 * The caller's user row (plan, credits, role), created on the first sign-in: `users.me` is null
 * until `users.getOrCreateUser` has run once for this Clerk user. `undefined` while loading or
 * being created; every call that needs a user row (createJob, getCredits, ...) waits for it.
 */
export function useCurrentUser(): CurrentUser | undefined {
  const { isAuthenticated } = useConvexAuth();
  const { user: clerkUser } = useUser();
  const me = useQuery(api.users.me, isAuthenticated ? {} : "skip");
  const getOrCreateUser = useMutation(api.users.getOrCreateUser);
  const email = clerkUser?.primaryEmailAddress?.emailAddress;
  useEffect(() => {
    // `clerkId` must be the token's subject, which is Clerk's user id.
    if (me === null && clerkUser && email) {
      void getOrCreateUser({ clerkId: clerkUser.id, email });
    }
  }, [me, clerkUser, email, getOrCreateUser]);
  return me ?? undefined;
}

/** Renders `children(user)` once the caller is signed in and has a user row. */
export function RequireUser({ children }: { children: (user: CurrentUser) => ReactNode }) {
  return (
    <>
      <AuthLoading>Loading…</AuthLoading>
      <Unauthenticated>
        <SignInButton />
      </Unauthenticated>
      <Authenticated>
        <WithUser>{children}</WithUser>
      </Authenticated>
    </>
  );
}

function WithUser({ children }: { children: (user: CurrentUser) => ReactNode }) {
  const user = useCurrentUser();
  return user === undefined ? <>Setting up your account…</> : <>{children(user)}</>;
}
