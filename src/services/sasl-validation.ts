// Temporary home of the SASL validators until src/postfix/map-encoding.ts lands.
export function isValidSaslUsername(value: string): boolean {
  return value.length > 0 && value.length <= 255 && /^[\x21-\x7e\u00a0-\uffff]+$/u.test(value) && !value.includes(':');
}
export function isValidSaslSecret(value: string): boolean {
  return value.length > 0 && !/[\u0000-\u001f\u007f]/u.test(value) && value.trim() === value;
}
