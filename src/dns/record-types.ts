/** The shape of one DNS record a sending domain must publish (records.ts and auth-template.ts). */
export type RecordPurpose = 'ownership' | 'spf' | 'dkim' | 'dmarc' | 'return_path';

export interface ExpectedRecord {
  purpose: RecordPurpose;
  type: 'TXT' | 'CNAME' | 'MX';
  /** Fully qualified name, lower case, no trailing dot. */
  host: string;
  value: string;
  /** A TXT value longer than 255 bytes, cut into the character-strings to publish. */
  strings?: string[];
  /** Verification needs this record (the return-path is advice). */
  required: boolean;
  /** MX: the preference. */
  priority?: number;
  /** From a provider template: variables the domain has not set yet (the record keeps their placeholders). */
  unset?: string[];
}
