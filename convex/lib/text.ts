/**
 * Checks for user-supplied text. JavaScript strings can hold things that are not text: unpaired
 * UTF-16 surrogates (not valid Unicode, so they cannot be stored faithfully as UTF-8), control
 * characters such as NUL or ESC, and invisible "default ignorable" characters (zero-width
 * spaces, bidi overrides, Hangul fillers, variation selectors) that make a string look empty.
 */

/** Under the `u` flag a surrogate pair is one code point, so `\p{Cs}` matches only unpaired ones. */
const UNPAIRED_SURROGATE = /\p{Cs}/u;
/** C0 and C1 controls and DEL, except tab, line feed and carriage return. */
const CONTROL_EXCEPT_NEWLINES = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
/** Any control (C0, C1, DEL), format (Cf) or default-ignorable character, or an unpaired surrogate. */
const INVISIBLE_OR_CONTROL = /[\p{Cc}\p{Cf}\p{Cs}\p{Default_Ignorable_Code_Point}]/u;
/** Nothing a reader would see: whitespace, controls and default-ignorable characters only. */
const BLANK = /^[\p{White_Space}\p{Cc}\p{Default_Ignorable_Code_Point}]*$/u;

/** True when the string is valid Unicode (no unpaired surrogate). */
export function isWellFormed(value: string): boolean {
  return !UNPAIRED_SURROGATE.test(value);
}

/** True when the string holds a control character other than tab and line breaks. */
export function hasControlCharacters(value: string): boolean {
  return CONTROL_EXCEPT_NEWLINES.test(value);
}

/** True when the string holds any control, format or invisible character (for identifiers). */
export function hasInvisibleOrControlCharacters(value: string): boolean {
  return INVISIBLE_OR_CONTROL.test(value);
}

/** True when nothing in the string is visible (empty, whitespace, zero-width, bidi controls...). */
export function isBlank(value: string): boolean {
  return BLANK.test(value);
}
