// Text from the queue (addresses, replies, headers) came from the network or a damaged file:
// no control character of it reaches the terminal as is (an escape sequence could rewrite
// the screen). Tabs are kept; everything else below 0x20, DEL and the C1 range become \xNN.

// Bidirectional and invisible format characters (U+200B-U+200F, U+202A-U+202E, U+2060-U+2069,
// U+FEFF) become \u{NNNN} too: a remote server's reply could otherwise reorder or hide what the
// operator reads ("Trojan Source").

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;

export function safeText(text: string): string {
  return text.replace(CONTROL, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
}
