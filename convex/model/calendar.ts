/** Calendar math (UTC): days and calendar months, for lot expiries and subscription periods. */

export const DAY_MS = 24 * 60 * 60 * 1000;

/** The start of the UTC day `time` falls in. */
export function dayStart(time: number): number {
  return Math.floor(time / DAY_MS) * DAY_MS;
}

/**
 * One calendar month (or `months`) after `time`, UTC, same time of day, the day clamped to the
 * target month's length: 31 Jan + 1 month = 28 Feb (29 in leap years).
 */
export function addMonthsUtc(time: number, months: number): number {
  const date = new Date(time);
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth() + months;
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return Date.UTC(
    year,
    month,
    Math.min(date.getUTCDate(), lastDay),
    date.getUTCHours(),
    date.getUTCMinutes(),
    date.getUTCSeconds(),
    date.getUTCMilliseconds(),
  );
}
