"use client";
import { useAction, useConvexAuth, useMutation, usePaginatedQuery, useQuery } from "convex/react";
import type { FunctionReturnType } from "convex/server";
import { useState } from "react";
import { api } from "../convex/_generated/api";
import type { Id } from "../convex/_generated/dataModel";
import { ErrorMessage } from "./errors";
import { useCurrentUser } from "./user";

type Plan = FunctionReturnType<typeof api.plans.listPlans>[number];
type PlanName = Plan["name"];

/** `price` and every `amount` are minor units of their `currency` (GBP or EUR). */
export function formatMoney(minor: number, currency: string): string {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 100);
}

/** The pricing page: no sign-in needed; signed in, each plan says what choosing it would do. */
export function PricingPage() {
  const plans = useQuery(api.plans.listPlans, {});
  const user = useCurrentUser();
  return (
    <ul>
      {plans?.map((plan) => (
        <li key={plan.name}>
          <h3>{plan.name}</h3>
          {plan.monthlyCredits} credits a month, {formatMoney(plan.price, plan.currency)}
          {user ? <PlanChoice planName={plan.name} /> : <p>Sign in to subscribe.</p>}
        </li>
      ))}
    </ul>
  );
}

const PENDING_PAYMENT_KEY = "cineweave.pendingPaymentId";

function PlanChoice({ planName }: { planName: PlanName }) {
  // Needs a user row: only rendered once useCurrentUser() has one.
  const preview = useQuery(api.subscriptions.previewChange, { planName });
  const createCheckout = useAction(api.payments.createCheckout);
  const changePlan = useMutation(api.subscriptions.changePlan);
  const [error, setError] = useState<unknown>(null);
  if (preview === undefined || preview.kind === "none") return null;
  const choose = async () => {
    setError(null);
    try {
      if (preview.kind === "downgrade") {
        await changePlan({ planName }); // waits for the period end (preview.takesEffectAt)
        return;
      }
      const checkout = await createCheckout({ planName });
      // Our payment id survives the trip to the bank; the return page follows it.
      sessionStorage.setItem(PENDING_PAYMENT_KEY, checkout.paymentId);
      if (checkout.hostedPaymentPageUrl === null) {
        throw new Error("TRUELAYER_RETURN_URI is not set on the deployment.");
      }
      window.location.assign(checkout.hostedPaymentPageUrl); // TrueLayer's hosted payment page
    } catch (caught) {
      setError(caught); // UNAVAILABLE (payments not configured), PAYMENT_PROVIDER_ERROR, ...
    }
  };
  return (
    <>
      <button onClick={() => void choose()}>
        {preview.kind === "downgrade"
          ? `Switch at ${new Date(preview.takesEffectAt!).toLocaleDateString()}`
          : `${preview.kind === "upgrade" ? "Upgrade" : "Pay"} ${formatMoney(preview.amount, preview.currency)}`}
      </button>
      {preview.creditsConverted > 0 && <p>{preview.creditsConverted} unused credits counted</p>}
      <ErrorMessage error={error} />
    </>
  );
}

/**
 * The page TrueLayer sends the user back to (TRUELAYER_RETURN_URI). The webhook, not this page,
 * credits the payment: follow it live until it is executed (credits arrive) or failed.
 */
export function PaymentReturnPage() {
  const [paymentId] = useState(
    () => sessionStorage.getItem(PENDING_PAYMENT_KEY) as Id<"payments"> | null,
  );
  const { isAuthenticated } = useConvexAuth();
  const { results } = usePaginatedQuery(
    api.payments.listPayments,
    isAuthenticated ? {} : "skip",
    { initialNumItems: 5 }, // newest first: a payment just made is on the first page
  );
  const payment = results.find((p) => p._id === paymentId);
  if (payment === undefined) return <p>Checking your payment…</p>;
  switch (payment.status) {
    case "pending":
      return <p>Waiting for your bank to confirm…</p>;
    case "executed":
    case "settled":
      return <p>Paid: {payment.creditsAdded} credits added to your balance.</p>;
    case "failed":
      return <p>The payment failed ({payment.failureReason}). Nothing was charged.</p>;
  }
}

type Subscription = NonNullable<FunctionReturnType<typeof api.subscriptions.get>>;

/** The subscription page: status, period, a scheduled change, the renewal's pay link. */
export function SubscriptionPage() {
  const subscription = useQuery(api.subscriptions.get, {});
  const cancel = useMutation(api.subscriptions.cancel);
  const resume = useMutation(api.subscriptions.resume);
  if (subscription === undefined) return null;
  if (subscription === null) return <PricingPage />;
  const day = (ms: number | undefined) => (ms ? new Date(ms).toLocaleDateString() : "?");
  return (
    <section>
      <p>
        {subscription.plan} plan, {subscription.status}; this period ends{" "}
        {day(subscription.currentPeriodEnd)}
        {subscription.pendingPlan && `, then ${subscription.pendingPlan}`}
      </p>
      <Renewal subscription={subscription} />
      <AutoRenewal mandate={subscription.mandate} currency={subscription.currency ?? "GBP"} />
      {subscription.status === "past_due" && (
        <p>Payment overdue: the subscription ends on {day(subscription.graceEndsAt)}.</p>
      )}
      {subscription.cancelAtPeriodEnd ? (
        <button onClick={() => void resume({})}>Keep my subscription</button>
      ) : (
        subscription.status !== "canceled" && (
          <button onClick={() => void cancel({})}>Cancel at period end</button>
        )
      )}
    </section>
  );
}

function Renewal({ subscription }: { subscription: Subscription }) {
  const { renewal } = subscription;
  if (!renewal) return null;
  if (renewal.status === "pending" && renewal.payUrl) {
    // Created 3 days before the period ends; the user authorises it at TrueLayer.
    return (
      <a href={renewal.payUrl}>
        Pay the next month: {formatMoney(renewal.amount, renewal.currency)}
      </a>
    );
  }
  return <p>Next month: {renewal.status}</p>;
}

/**
 * Auto-renewal on the user's bank (a TrueLayer mandate): set it up on TrueLayer's page, see its
 * status live, stop it. `setUpAutoRenewal` is UNAVAILABLE where the deployment does not offer it.
 */
function AutoRenewal({
  mandate,
  currency,
}: {
  mandate: Subscription["mandate"];
  currency: string;
}) {
  const setUp = useAction(api.subscriptions.setUpAutoRenewal);
  const stop = useAction(api.subscriptions.cancelAutoRenewal);
  const [error, setError] = useState<unknown>(null);
  const start = async () => {
    try {
      const { hostedPaymentPageUrl } = await setUp({ returnUri: window.location.href });
      if (hostedPaymentPageUrl) window.location.assign(hostedPaymentPageUrl);
    } catch (e) {
      setError(e);
    }
  };
  if (mandate?.status === "authorized") {
    return (
      <p>
        Renews automatically from your bank (at most {formatMoney(mandate.maxAmount, currency)} a
        payment). <button onClick={() => void stop({}).catch(setError)}>Stop</button>
        <ErrorMessage error={error} />
      </p>
    );
  }
  return (
    <p>
      {mandate?.status === "authorization_required" && "Waiting for your bank's approval. "}
      <button onClick={() => void start()}>Renew automatically from my bank</button>
      <ErrorMessage error={error} />
    </p>
  );
}
