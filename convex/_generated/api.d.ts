/* eslint-disable */
/**
 * Generated `api` utility.
 *
 * THIS CODE IS AUTOMATICALLY GENERATED.
 *
 * To regenerate, run `npx convex dev`.
 * @module
 */

import type * as clerk from "../clerk.js";
import type * as credits from "../credits.js";
import type * as crons from "../crons.js";
import type * as demo from "../demo.js";
import type * as http from "../http.js";
import type * as imageUploads from "../imageUploads.js";
import type * as jobs from "../jobs.js";
import type * as lib_documentCache from "../lib/documentCache.js";
import type * as lib_errors from "../lib/errors.js";
import type * as lib_functions from "../lib/functions.js";
import type * as lib_http from "../lib/http.js";
import type * as lib_noticeTemplates from "../lib/noticeTemplates.js";
import type * as lib_pagination from "../lib/pagination.js";
import type * as lib_r2 from "../lib/r2.js";
import type * as lib_rateLimits from "../lib/rateLimits.js";
import type * as lib_sweeps from "../lib/sweeps.js";
import type * as lib_text from "../lib/text.js";
import type * as lib_triggers from "../lib/triggers.js";
import type * as lib_trueLayerFlow from "../lib/trueLayerFlow.js";
import type * as lib_trueLayerMandates from "../lib/trueLayerMandates.js";
import type * as lib_truelayer from "../lib/truelayer.js";
import type * as lib_urls from "../lib/urls.js";
import type * as lib_validators from "../lib/validators.js";
import type * as lib_workpools from "../lib/workpools.js";
import type * as mandates from "../mandates.js";
import type * as media from "../media.js";
import type * as metrics from "../metrics.js";
import type * as migrations from "../migrations.js";
import type * as model_calendar from "../model/calendar.js";
import type * as model_credits from "../model/credits.js";
import type * as model_deferredCounters from "../model/deferredCounters.js";
import type * as model_imageUploads from "../model/imageUploads.js";
import type * as model_images from "../model/images.js";
import type * as model_jobRequests from "../model/jobRequests.js";
import type * as model_jobViews from "../model/jobViews.js";
import type * as model_jobs from "../model/jobs.js";
import type * as model_ledger from "../model/ledger.js";
import type * as model_lotHolds from "../model/lotHolds.js";
import type * as model_lots from "../model/lots.js";
import type * as model_lotsMigration from "../model/lotsMigration.js";
import type * as model_mandateEvents from "../model/mandateEvents.js";
import type * as model_mandateRenewals from "../model/mandateRenewals.js";
import type * as model_mandates from "../model/mandates.js";
import type * as model_metricsBucketDeltas from "../model/metricsBucketDeltas.js";
import type * as model_metricsBuckets from "../model/metricsBuckets.js";
import type * as model_metricsDays from "../model/metricsDays.js";
import type * as model_metricsOverview from "../model/metricsOverview.js";
import type * as model_metricsRollups from "../model/metricsRollups.js";
import type * as model_noticeTriggers from "../model/noticeTriggers.js";
import type * as model_notices from "../model/notices.js";
import type * as model_paymentCredits from "../model/paymentCredits.js";
import type * as model_payments from "../model/payments.js";
import type * as model_plans from "../model/plans.js";
import type * as model_refundCredits from "../model/refundCredits.js";
import type * as model_refunds from "../model/refunds.js";
import type * as model_subscriptionChanges from "../model/subscriptionChanges.js";
import type * as model_subscriptionPayments from "../model/subscriptionPayments.js";
import type * as model_subscriptionPeriods from "../model/subscriptionPeriods.js";
import type * as model_subscriptionQuotes from "../model/subscriptionQuotes.js";
import type * as model_subscriptionRenewals from "../model/subscriptionRenewals.js";
import type * as model_subscriptionState from "../model/subscriptionState.js";
import type * as model_subscriptionTotals from "../model/subscriptionTotals.js";
import type * as model_users from "../model/users.js";
import type * as model_videoDeletions from "../model/videoDeletions.js";
import type * as model_videos from "../model/videos.js";
import type * as model_webhookEvents from "../model/webhookEvents.js";
import type * as model_worker from "../model/worker.js";
import type * as model_workerReports from "../model/workerReports.js";
import type * as model_workerSweeps from "../model/workerSweeps.js";
import type * as notices from "../notices.js";
import type * as payments from "../payments.js";
import type * as plans from "../plans.js";
import type * as subscriptions from "../subscriptions.js";
import type * as truelayer from "../truelayer.js";
import type * as users from "../users.js";
import type * as webhooks from "../webhooks.js";
import type * as worker from "../worker.js";
import type * as workerHttp from "../workerHttp.js";

import type {
  ApiFromModules,
  FilterApi,
  FunctionReference,
} from "convex/server";

declare const fullApi: ApiFromModules<{
  clerk: typeof clerk;
  credits: typeof credits;
  crons: typeof crons;
  demo: typeof demo;
  http: typeof http;
  imageUploads: typeof imageUploads;
  jobs: typeof jobs;
  "lib/documentCache": typeof lib_documentCache;
  "lib/errors": typeof lib_errors;
  "lib/functions": typeof lib_functions;
  "lib/http": typeof lib_http;
  "lib/noticeTemplates": typeof lib_noticeTemplates;
  "lib/pagination": typeof lib_pagination;
  "lib/r2": typeof lib_r2;
  "lib/rateLimits": typeof lib_rateLimits;
  "lib/sweeps": typeof lib_sweeps;
  "lib/text": typeof lib_text;
  "lib/triggers": typeof lib_triggers;
  "lib/trueLayerFlow": typeof lib_trueLayerFlow;
  "lib/trueLayerMandates": typeof lib_trueLayerMandates;
  "lib/truelayer": typeof lib_truelayer;
  "lib/urls": typeof lib_urls;
  "lib/validators": typeof lib_validators;
  "lib/workpools": typeof lib_workpools;
  mandates: typeof mandates;
  media: typeof media;
  metrics: typeof metrics;
  migrations: typeof migrations;
  "model/calendar": typeof model_calendar;
  "model/credits": typeof model_credits;
  "model/deferredCounters": typeof model_deferredCounters;
  "model/imageUploads": typeof model_imageUploads;
  "model/images": typeof model_images;
  "model/jobRequests": typeof model_jobRequests;
  "model/jobViews": typeof model_jobViews;
  "model/jobs": typeof model_jobs;
  "model/ledger": typeof model_ledger;
  "model/lotHolds": typeof model_lotHolds;
  "model/lots": typeof model_lots;
  "model/lotsMigration": typeof model_lotsMigration;
  "model/mandateEvents": typeof model_mandateEvents;
  "model/mandateRenewals": typeof model_mandateRenewals;
  "model/mandates": typeof model_mandates;
  "model/metricsBucketDeltas": typeof model_metricsBucketDeltas;
  "model/metricsBuckets": typeof model_metricsBuckets;
  "model/metricsDays": typeof model_metricsDays;
  "model/metricsOverview": typeof model_metricsOverview;
  "model/metricsRollups": typeof model_metricsRollups;
  "model/noticeTriggers": typeof model_noticeTriggers;
  "model/notices": typeof model_notices;
  "model/paymentCredits": typeof model_paymentCredits;
  "model/payments": typeof model_payments;
  "model/plans": typeof model_plans;
  "model/refundCredits": typeof model_refundCredits;
  "model/refunds": typeof model_refunds;
  "model/subscriptionChanges": typeof model_subscriptionChanges;
  "model/subscriptionPayments": typeof model_subscriptionPayments;
  "model/subscriptionPeriods": typeof model_subscriptionPeriods;
  "model/subscriptionQuotes": typeof model_subscriptionQuotes;
  "model/subscriptionRenewals": typeof model_subscriptionRenewals;
  "model/subscriptionState": typeof model_subscriptionState;
  "model/subscriptionTotals": typeof model_subscriptionTotals;
  "model/users": typeof model_users;
  "model/videoDeletions": typeof model_videoDeletions;
  "model/videos": typeof model_videos;
  "model/webhookEvents": typeof model_webhookEvents;
  "model/worker": typeof model_worker;
  "model/workerReports": typeof model_workerReports;
  "model/workerSweeps": typeof model_workerSweeps;
  notices: typeof notices;
  payments: typeof payments;
  plans: typeof plans;
  subscriptions: typeof subscriptions;
  truelayer: typeof truelayer;
  users: typeof users;
  webhooks: typeof webhooks;
  worker: typeof worker;
  workerHttp: typeof workerHttp;
}>;

/**
 * A utility for referencing Convex functions in your app's public API.
 *
 * Usage:
 * ```js
 * const myFunctionReference = api.myModule.myFunction;
 * ```
 */
export declare const api: FilterApi<
  typeof fullApi,
  FunctionReference<any, "public">
>;

/**
 * A utility for referencing Convex functions in your app's internal API.
 *
 * Usage:
 * ```js
 * const myFunctionReference = internal.myModule.myFunction;
 * ```
 */
export declare const internal: FilterApi<
  typeof fullApi,
  FunctionReference<any, "internal">
>;

export declare const components: {
  rateLimiter: import("@convex-dev/rate-limiter/_generated/component.js").ComponentApi<"rateLimiter">;
  resend: import("@convex-dev/resend/_generated/component.js").ComponentApi<"resend">;
  r2Deletions: import("@convex-dev/workpool/_generated/component.js").ComponentApi<"r2Deletions">;
  renewalCreations: import("@convex-dev/workpool/_generated/component.js").ComponentApi<"renewalCreations">;
};
