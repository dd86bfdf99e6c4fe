"use client";
import { usePaginatedQuery, useQuery } from "convex/react";
import { api } from "../convex/_generated/api";

/** Balance, held credits and the next expiry. Needs a user row (see user.tsx). */
export function Balance() {
  const credits = useQuery(api.credits.getCredits, {});
  if (credits === undefined) return null;
  return (
    <p>
      {credits.credits} credits ({credits.plan.name} plan)
      {credits.reserved > 0 && `, ${credits.reserved} held by running jobs`}
      {credits.expiring &&
        `; ${credits.expiring.credits} expire on ${new Date(credits.expiring.at).toLocaleDateString()}`}
    </p>
  );
}

/** Where the credits come from and when each lot expires, live lots first. */
export function Lots() {
  const { results } = usePaginatedQuery(api.credits.listLots, {}, { initialNumItems: 20 });
  return (
    <table>
      <tbody>
        {results.map((lot) => (
          <tr key={lot._id}>
            <td>{lot.source}</td>
            <td>
              {lot.remaining - lot.held} of {lot.granted} left
            </td>
            <td>
              {lot.expiresAt ? new Date(lot.expiresAt).toLocaleDateString() : "never expires"}
            </td>
            <td>{lot.status}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Every balance change, newest first (kinds: docs/credits.md#ledger-kinds). */
export function Ledger() {
  const { results, status, loadMore } = usePaginatedQuery(
    api.credits.listLedger,
    {},
    { initialNumItems: 50 },
  );
  return (
    <ul>
      {results.map((row) => (
        <li key={row._id}>
          {new Date(row.createdAt).toLocaleString()} {row.kind} {row.delta > 0 ? "+" : ""}
          {row.delta} → {row.balanceAfter}
        </li>
      ))}
      {status === "CanLoadMore" && <button onClick={() => loadMore(50)}>More</button>}
    </ul>
  );
}
