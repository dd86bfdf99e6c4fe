"use client";
// app/ConvexClientProvider.tsx: wrap the app in it (app/layout.tsx). In a Next.js app import
// ClerkProvider and useAuth from "@clerk/nextjs"; they have the same shape as these.
import { ClerkProvider, useAuth } from "@clerk/react";
import { ConvexReactClient } from "convex/react";
import { ConvexProviderWithClerk } from "convex/react-clerk";
import type { ReactNode } from "react";

// The deployment URL (`https://<deployment>.convex.cloud`; `npm run dev` writes the local one to
// .env.local as CONVEX_URL). Not the `.convex.site` URL: that one serves the HTTP routes.
const convexUrl = process.env.NEXT_PUBLIC_CONVEX_URL;
if (!convexUrl) {
  throw new Error("Set NEXT_PUBLIC_CONVEX_URL to the Convex deployment URL (see .env.example).");
}
const convex = new ConvexReactClient(convexUrl);

export function ConvexClientProvider({ children }: { children: ReactNode }) {
  return (
    <ClerkProvider publishableKey={process.env.NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY}>
      {/* Fetches Clerk's JWT template named "convex" (auth.config.ts: applicationID "convex")
          and sends it with every query, mutation and action. */}
      <ConvexProviderWithClerk client={convex} useAuth={useAuth}>
        {children}
      </ConvexProviderWithClerk>
    </ClerkProvider>
  );
}
