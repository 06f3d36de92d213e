// Text from the queue (addresses, replies, headers) came from the network or a damaged file:
// no control character of it reaches the terminal as is (an escape sequence could rewrite
// the screen). Tabs are kept; everything else below 0x20, DEL and the C1 range become \xNN.

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

export function safeText(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
