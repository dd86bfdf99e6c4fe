/* eslint-disable */
/**
 * Generated `api` utility.
 *
 * THIS CODE IS AUTOMATICALLY GENERATED.
 *
 * To regenerate, run `npx convex dev`.
 * @module
 */

import type {
  ApiFromModules,
  FilterApi,
  FunctionReference,
} from "convex/server";
import type * as credits from "../credits.js";
import type * as crons from "../crons.js";
import type * as jobs from "../jobs.js";
import type * as lib_auth from "../lib/auth.js";
import type * as lib_errors from "../lib/errors.js";
import type * as lib_pagination from "../lib/pagination.js";
import type * as lib_validators from "../lib/validators.js";
import type * as metrics from "../metrics.js";
import type * as model_credits from "../model/credits.js";
import type * as model_jobs from "../model/jobs.js";
import type * as model_ledger from "../model/ledger.js";
import type * as model_metrics from "../model/metrics.js";
import type * as model_plans from "../model/plans.js";
import type * as model_users from "../model/users.js";
import type * as plans from "../plans.js";
import type * as users from "../users.js";

/**
 * A utility for referencing Convex functions in your app's API.
 *
 * Usage:
 * ```js
 * const myFunctionReference = api.myModule.myFunction;
 * ```
 */
declare const fullApi: ApiFromModules<{
  credits: typeof credits;
  crons: typeof crons;
  jobs: typeof jobs;
  "lib/auth": typeof lib_auth;
  "lib/errors": typeof lib_errors;
  "lib/pagination": typeof lib_pagination;
  "lib/validators": typeof lib_validators;
  metrics: typeof metrics;
  "model/credits": typeof model_credits;
  "model/jobs": typeof model_jobs;
  "model/ledger": typeof model_ledger;
  "model/metrics": typeof model_metrics;
  "model/plans": typeof model_plans;
  "model/users": typeof model_users;
  plans: typeof plans;
  users: typeof users;
}>;
export declare const api: FilterApi<
  typeof fullApi,
  FunctionReference<any, "public">
>;
export declare const internal: FilterApi<
  typeof fullApi,
  FunctionReference<any, "internal">
>;
