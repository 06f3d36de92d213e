// The value a parser of operator-written text returns when the text is wrong: what is wrong
// and what is allowed, in words the configuration error can quote. Parsers return
// `T | ParseError` and test it with `isParseError`.

export interface ParseError {
  readonly error: string;
}

export function isParseError(x: unknown): x is ParseError {
  return typeof x === 'object' && x !== null && 'error' in x && typeof (x as ParseError).error === 'string';
}
